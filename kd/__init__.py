"""Distill Lab's training core: configs, data, models, methods, trainer, metrics, store.

Never imports streamlit: the dashboard and the CLI are two consumers of the same events.
"""

__version__ = "0.1.0"
