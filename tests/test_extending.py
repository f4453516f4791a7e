"""docs/extending.md's worked example runs as written: one new file (registered by executing
it), one changed import line, and the method is listed, trained and its knob checked."""

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "extending.md").read_text()


def test_the_registration_line_in_the_docs_is_todays_plus_one_name():
    blocks = re.findall(r"```python\n(.*?)```", DOC, re.S)
    line = blocks[1].strip()
    source = (ROOT / "kd" / "methods" / "__init__.py").read_text().splitlines()
    today = next(x for x in source if x.startswith("from kd.methods import hinton"))
    assert line.replace(", logit_mse", "") == today


def test_the_worked_example_is_listed_trains_and_its_knob_is_its_own(runs_dir):
    run = _cli_with(None, re.findall(r"```python\n(.*?)```", DOC, re.S)[0])  # a new file, kd/methods/logit_mse.py
    listed = run("list", "methods")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^logit-mse\s+Ba & Caruana 2014: .*\[--mse-weight 1.0\]$", listed.stdout, re.M)
    trained = run("train", "--method", "logit-mse", "--mse-weight", "0.5", "--epochs", "2", "--json")
    assert trained.returncode == 0, trained.stderr
    out = json.loads(trained.stdout)
    assert out["status"] == "done" and out["config"]["options"] == {"mse_weight": 0.5}
    refused = run("train", "--method", "kd", "--mse-weight", "0.5")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: --mse-weight: is a knob of logit-mse, not of method 'kd'"


def _block(word: str) -> str:
    """The docs' python block that contains `word`."""
    return next(b for b in re.findall(r"```python\n(.*?)```", DOC, re.S) if word in b)


def _cli_with(module: str | None, example: str):
    """Run `python -m kd ARGS` with the example executed inside `module`, as if written there
    (None: as a new module of its own, registered by running it)."""
    where = (
        f"module = importlib.import_module({module!r})\nfile, space = module.__file__, vars(module)\n"
        if module
        else "file, space = 'example.py', {'__name__': 'example'}\n"
    )
    script = (
        f"import importlib, sys\n{where}exec(compile({example!r}, file, 'exec'), space)\n"
        "from kd.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    return lambda *args: subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_the_model_example_is_listed_trains_takes_features_and_refuses_tables(runs_dir):
    run = _cli_with("kd.models", _block("convnet-tiny"))
    listed = run("list", "models")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^convnet-tiny\s+Two conv3x3-ReLU-maxpool blocks", listed.stdout, re.M)
    # Attention transfer pairs its two blocks with the student's conv stages.
    flags = ("--dataset", "digits", "--teacher", "convnet-tiny", "--student", "cnn-x0.25", "--epochs", "1")
    trained = run("train", *flags, "--teacher-epochs", "1", "--method", "at", "--json")
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["status"] == "done"
    refused = run("train", "--dataset", "spirals", "--teacher", "convnet-tiny", "--dry-run")
    assert refused.returncode == 2
    assert "convnet-tiny needs images (C, H, W); this data set has 2 features per example" in refused.stderr


def test_the_data_set_example_is_listed_trains_and_refuses_conv_models(runs_dir):
    run = _cli_with("kd.data", _block('"wine"'))
    listed = run("list", "datasets")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^wine\s+UCI wine: 13 measurements", listed.stdout, re.M)
    trained = run("train", "--dataset", "wine", "--epochs", "5", "--teacher-epochs", "5", "--json")
    assert trained.returncode == 0, trained.stderr
    out = json.loads(trained.stdout)
    assert out["status"] == "done" and out["models"]["teacher"]["accuracy"] > 0.8  # 36 test rows, 3 classes
    refused = run("train", "--dataset", "wine", "--teacher", "lenet5", "--dry-run")
    assert refused.returncode == 2
    assert "lenet5 needs images (C, H, W); this data set has 13 features per example" in refused.stderr


def test_the_page_example_draws_finished_runs_and_its_app_line_is_like_the_others(runs_dir, tmp_path):
    from streamlit.testing.v1 import AppTest

    from kd import runner
    from kd.config import RunConfig
    from kd.store import Store

    script = tmp_path / "gains.py"
    script.write_text(_block('st.title("Gains")'))
    empty = AppTest.from_file(str(script), default_timeout=60).run()
    assert not empty.exception and "No finished run yet" in empty.info[0].value
    run_id, _ = runner.train_new(Store(), RunConfig(epochs=2, teacher_epochs=2, batch_size=128, device="cpu"))
    at = AppTest.from_file(str(script), default_timeout=60).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert len(table) == 1 and table["method"][0] == "kd" and run_id in table["run"][0]  # its name, pair and id
    gain = Store().get(run_id).summary["gain"]
    assert abs(table["gain (points)"][0] - 100 * gain) < 1e-9
    line = _block('st.Page("pages/gains.py"').strip().splitlines()[2].strip()
    pages_in_app = re.findall(
        r'^\s+(st\.Page\("pages/\w+\.py", title="\w+", icon=":material/\w+:"\),)$', (ROOT / "app.py").read_text(), re.M
    )
    assert len(pages_in_app) >= 5 and re.fullmatch(
        r'st\.Page\("pages/gains\.py", title="Gains", icon=":material/\w+:"\),', line
    )
