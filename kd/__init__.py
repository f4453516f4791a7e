"""Distill Lab's training core: configs, data, models, methods, trainer, metrics, store.

Never imports streamlit: the dashboard and the CLI are two consumers of the same events.
"""

__version__ = "0.1.0"


def load(run_or_path: str, model: str = "student"):
    """A trained model as an nn.Module with `.config` and `.class_names`: `kd.load("RUN_ID")` (the
    distilled student; model="baseline" or "teacher" for the others) or `kd.load("FILE.safetensors")`.
    See kd.export.load; imported when called, so `import kd` stays light."""
    import importlib

    return importlib.import_module("kd.export").load(run_or_path, model)
