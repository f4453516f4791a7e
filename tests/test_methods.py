"""Methods as plug-ins: each declares the RunConfig fields it uses and its own knobs; a run of
each finishes from the CLI and from the Train page; autograd serves a method with no written-out
gradient; a knob of another method is refused naming both."""
import json
import subprocess
import time
import sys
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from kd.config import RunConfig, method_options
from kd.errors import ConfigError
from kd.losses import dkd_terms, dist_terms
from kd.methods import METHODS, build
from kd.store import Store

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--epochs", "3", "--teacher-epochs", "3", "--device", "cpu"]


@pytest.mark.parametrize("method,flags", [("dkd", ["--dkd-beta", "4", "--dkd-warmup", "2"]),
                                          ("dist", ["--dist-tau", "2"])])
def test_a_digits_run_of_each_method_finishes_from_the_cli(method, flags, runs_dir):
    p = subprocess.run([sys.executable, "-m", "kd", "train", "--method", method, *flags, *QUICK, "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["status"] == "done" and 0.5 < out["models"]["student"]["accuracy"] <= 1
    run = Store().get(out["run_id"])
    terms = {k for _, e in Store().events(run.id) if e["kind"] == "step" and e["stage"] == "student" for k in e
             if k.startswith("loss_")}
    assert terms == {"loss_ce", "loss_tckd", "loss_nckd"} if method == "dkd" else {"loss_ce", "loss_inter", "loss_intra"}
    assert run.config["options"] == ({"dkd_beta": 4.0, "dkd_warmup": 2} if method == "dkd" else {"dist_tau": 2.0})


def test_dkd_warms_up_linearly_by_epoch_and_its_terms_are_the_library_functions():
    m = build(RunConfig(method="dkd", temperature=2.0, options={"dkd_beta": 3.0, "dkd_warmup": 4}))
    g = torch.Generator().manual_seed(0)
    s, t, y = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g), torch.randint(0, 5, (8,), generator=g)
    want = dkd_terms(s, t, y, alpha=1.0, beta=3.0, temperature=2.0)
    for epoch, ramp in ((1, 0.25), (2, 0.5), (4, 1.0), (9, 1.0)):
        m.on_epoch(epoch, 10)
        got = m(s, y, m.prepare(t))
        torch.testing.assert_close(got["tckd"], ramp * want["tckd"])
        torch.testing.assert_close(got["nckd"], ramp * want["nckd"])
    d = build(RunConfig(method="dist"))
    torch.testing.assert_close(d(s, y, t)["intra"], dist_terms(s, t, 1.0, 1.0, 1.0)["intra"])


def test_methods_declare_their_knobs_and_a_knob_of_another_method_is_refused_naming_both():
    assert {"dkd_alpha", "dkd_beta", "dkd_warmup", "dist_beta", "dist_gamma", "dist_tau"} <= set(method_options())
    for entry in METHODS:
        assert set(entry.obj.knobs) <= set(RunConfig.__dataclass_fields__), entry.key
        assert entry.obj(RunConfig(method=entry.key)).formula()[0].startswith(r"\mathcal{L}")
    with pytest.raises(ConfigError, match="'dkd_beta': is a knob of dkd, not of method 'dist'"):
        RunConfig(method="dist", options={"dkd_beta": 2.0})
    with pytest.raises(ConfigError, match="'nope': no method has this knob"):
        RunConfig(method="dkd", options={"nope": 1})
    assert RunConfig(method="dkd").option("dkd_beta") == 8.0
    assert RunConfig(method="dkd", options={"dkd_beta": 2.5}).option("dkd_beta") == 2.5


def test_the_train_page_shows_the_chosen_methods_knobs_and_its_loss_and_starts_it(runs_dir):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/train.py").run()
    method = next(s for s in at.selectbox if s.label == "Method")
    method.set_value("dkd").run()
    labels = {w.label for w in at.number_input}
    assert {"DKD alpha (target-class term)", "DKD beta (non-target term)", "DKD warm-up (epochs)"} <= labels
    assert "alpha (weight of the teacher's soft targets)" not in {s.label for s in at.slider}  # kd's, not dkd's
    assert any(r"(b_t\|b_s)" in latex.value for latex in at.latex)
    next(n for n in at.number_input if n.label == "DKD beta (non-target term)").set_value(2.0)
    for label in ("Epochs", "Teacher epochs"):
        next(n for n in at.number_input if n.label == label).set_value(1)
    at.run()
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception
    (run,) = Store().runs()
    assert run.config["method"] == "dkd" and run.config["options"]["dkd_beta"] == 2.0
    deadline = time.time() + 300
    while Store().get(run.id).status in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    assert Store().get(run.id).status == "done", (runs_dir / run.id / "worker.log").read_text()
