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
    example = re.findall(r"```python\n(.*?)```", DOC, re.S)[0]
    script = (
        f"example = {example!r}\n"
        "exec(compile(example, 'kd/methods/logit_mse.py', 'exec'), {'__name__': 'kd.methods.logit_mse'})\n"
        "import sys\nfrom kd.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    )
    run = lambda *args: subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
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
