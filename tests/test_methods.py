"""Methods as plug-ins: each declares the RunConfig fields it uses and its own knobs; a run of
each finishes from the CLI and from the Train page; autograd serves a method with no written-out
gradient; a knob of another method is refused naming both."""

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from kd.config import RunConfig, method_options
from kd.errors import ConfigError
from kd.losses import dist_terms, dkd_terms
from kd.methods import METHODS, build
from kd.store import Store

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--epochs", "3", "--teacher-epochs", "3", "--device", "cpu"]


CONV = ["--teacher", "cnn-x0.5", "--student", "cnn-x0.25"]
CLI_RUNS = {  # method: (flags, the loss terms it logs, the options stored with the run)
    "kd": (["--standardize"], {"ce", "soft"}, None),
    "none": ([], {"ce"}, None),
    "dkd": (["--dkd-beta", "4", "--dkd-warmup", "2"], {"ce", "tckd", "nckd"}, {"dkd_beta": 4.0, "dkd_warmup": 2}),
    "dist": (["--dist-tau", "2"], {"ce", "inter", "intra"}, {"dist_tau": 2.0}),
    "ctkd": (["--ctkd-ramp", "2"], {"ce", "soft"}, {"ctkd_ramp": 2}),
    "fitnet": (["--fitnet-student-tap", "embedding"], {"ce", "hint"}, {"fitnet_student_tap": "embedding"}),
    "at": ([*CONV, "--at-weight", "10"], {"ce", "at"}, {"at_weight": 10.0}),
    "rkd": (["--batch-size", "32"], {"ce", "distance", "angle"}, None),
}


@pytest.mark.parametrize("method", CLI_RUNS)
def test_a_digits_run_of_each_method_finishes_from_the_cli(method, runs_dir):
    flags, logged, options = CLI_RUNS[method]
    p = subprocess.run(
        [sys.executable, "-m", "kd", "train", "--method", method, *flags, *QUICK, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["status"] == "done" and 0.5 < out["models"]["student"]["accuracy"] <= 1
    run = Store().get(out["run_id"])
    terms = {
        k
        for _, e in Store().events(run.id)
        if e["kind"] == "step" and e["stage"] == "student"
        for k in e
        if k.startswith("loss_")
    }
    assert terms == {f"loss_{k}" for k in logged}
    assert run.config["options"] == options
    assert run.config["standardize"] is (method == "kd")


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
    next(r for r in at.radio if r.label == "Seeds").set_value(1)  # one run, not a sweep
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception
    (run,) = Store().runs()
    assert run.config["method"] == "dkd" and run.config["options"]["dkd_beta"] == 2.0
    deadline = time.time() + 300
    while Store().get(run.id).status in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    assert Store().get(run.id).status == "done", (runs_dir / run.id / "worker.log").read_text()


def test_the_at_method_is_the_library_at_loss_summed_over_its_stage_pairs():
    from kd import models
    from kd.features import Features, Tap
    from kd.losses_features import at_loss

    torch.manual_seed(0)
    cfg = RunConfig(method="at", teacher="cnn-x1", student="lenet5-half", options={"at_p": 3.0})
    teacher, student = models.build("cnn-x1", (1, 28, 28), 10).eval(), models.build("lenet5-half", (1, 28, 28), 10)
    m = build(cfg)
    m.bind(student, teacher, (1, 28, 28))
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    with Tap(student, m.taps["student"]) as ts, Tap(teacher, m.taps["teacher"]) as tt:
        s_logits = student(x)
        with torch.no_grad():
            teacher(x)
    want = sum(at_loss(ts.out[s], tt.out[t], 3.0) for s, t in zip(m.taps["student"], m.taps["teacher"]))
    got = m(s_logits, y, None, Features(ts.out, m.prepare_features(tt.out)))
    torch.testing.assert_close(got["at"], 1000.0 * want)
    torch.testing.assert_close(got["ce"], torch.nn.functional.cross_entropy(s_logits, y))


def test_kd_with_standardize_is_the_papers_formula_written_plainly():
    import numpy as np

    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(4, 5, generator=g, dtype=torch.float64) * 3, torch.randn(4, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 2, 4, 1])
    m = build(RunConfig(method="kd", standardize=True, temperature=2.0, alpha=0.7))
    assert m.grad is None  # the raw logits' written-out gradient does not apply: autograd serves it
    got = m(s, y, m.prepare(t))

    def z(v):  # z-score with the unbiased std, as the reference
        return (v - v.mean()) / (v.std(ddof=1) + 1e-7)

    def softmax(v):
        e = np.exp(v - v.max())
        return e / e.sum()

    ce = kl = 0.0
    for zs, zt, c in zip(s.numpy(), t.numpy(), y.numpy()):
        ce -= np.log(softmax(zs)[c])
        ps, pt = softmax(z(zs) / 2.0), softmax(z(zt) / 2.0)
        kl += np.sum(pt * np.log(pt / ps))
    assert got["ce"].item() == pytest.approx(0.3 * ce / 4, rel=1e-9)
    assert got["soft"].item() == pytest.approx(0.7 * 4.0 * kl / 4, rel=1e-9)


def test_ctkd_learns_its_temperature_against_the_student_on_a_cosine_curriculum():
    from kd.losses import soft_kl

    m = build(RunConfig(method="ctkd", alpha=0.9))
    assert m.report()["T"] == pytest.approx(1 + 20 / (1 + math.exp(-1)))  # 15.62: the reference's start
    g = torch.Generator().manual_seed(1)
    s, t, y = (
        torch.randn(16, 10, generator=g),
        torch.randn(16, 10, generator=g),
        torch.randint(0, 10, (16,), generator=g),
    )
    for epoch, strength in ((1, (1 - math.cos(math.pi / 10)) / 2), (5, 0.5), (10, 1.0), (30, 1.0)):
        m.on_epoch(epoch, 40)
        assert m.strength == pytest.approx(strength)
    m.on_epoch(5, 40)
    m.module.raw.grad = None
    sum(m(s, y, m.prepare(t)).values()).backward()
    # Without the reversal: d(alpha T^2 KL)/d theta, with T = 1 + 20 sigmoid(theta)
    theta = torch.tensor(1.0, requires_grad=True)
    (0.9 * soft_kl(s, t, 1 + 20 * torch.sigmoid(theta))).backward()
    assert m.module.raw.grad.item() == pytest.approx(-0.5 * theta.grad.item(), rel=1e-5)  # reversed, times lambda


def _train_page(runs_dir) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/train.py").run()
    return at


def test_the_train_page_starts_a_digits_run_of_every_method_and_refuses_at_on_an_mlp(runs_dir):
    at = _train_page(runs_dir)
    next(s for s in at.selectbox if s.label == "Method").set_value("at").run()
    assert "method: at (attention transfer) needs convolutional feature maps; the student mlp-128 has none" in " ".join(
        e.value.replace("\\", "") for e in at.error
    )
    assert next(b for b in at.button if b.label == "Start training").disabled
    for method in METHODS.keys():
        at = _train_page(runs_dir)
        next(s for s in at.selectbox if s.label == "Method").set_value(method).run()
        if method == "at":
            next(s for s in at.selectbox if s.label == "Teacher").set_value("cnn-x0.5").run()
            next(s for s in at.selectbox if s.label == "Student").set_value("cnn-x0.25").run()
        if method == "fitnet":  # a layer knob offers the model's taps
            tap = next(s for s in at.selectbox if s.label == "FitNet student hint layer")
            assert tap.options == ["middle", "hidden1", "embedding"]
            tap.set_value("embedding")
        if method == "kd":
            next(c for c in at.checkbox if c.label == "Logit standardisation").check()
        for label in ("Epochs", "Teacher epochs"):
            next(n for n in at.number_input if n.label == label).set_value(1)
        at.run()
        assert not at.error, [e.value for e in at.error]
        next(r for r in at.radio if r.label == "Seeds").set_value(1)  # one run, not a sweep
        next(b for b in at.button if b.label == "Start training").click().run()
        assert not at.exception and not at.error, method
    runs = {r.config["method"]: r for r in Store().runs()}
    assert set(runs) == set(METHODS.keys())
    assert runs["kd"].config["standardize"] and runs["fitnet"].config["options"]["fitnet_student_tap"] == "embedding"
    deadline = time.time() + 400
    while any(Store().get(r.id).status in ("queued", "running") for r in runs.values()) and time.time() < deadline:
        time.sleep(0.5)
    for method, r in runs.items():
        assert Store().get(r.id).status == "done", (method, (runs_dir / r.id / "worker.log").read_text())


def test_a_method_sees_each_epoch_and_each_step_and_its_parameters_are_trained(monkeypatch):
    """The schedule hooks are called in order, and a method's own parameters reach the optimizer
    (the edge faked here: the method the trainer builds is ctkd with hooks that record)."""
    from kd import methods
    from kd.trainer import Trainer

    seen = {"epochs": [], "steps": []}

    class Recording(METHODS.get("ctkd")):
        def on_epoch(self, epoch, epochs):
            seen["epochs"].append((epoch, epochs))
            super().on_epoch(epoch, epochs)

        def on_step(self, step, total_steps):
            seen["steps"].append((step, total_steps))

    built = []
    real_build = methods.build
    monkeypatch.setattr(
        methods,
        "build",
        lambda cfg: built.append(Recording(cfg)) or built[-1] if cfg.method == "ctkd" else real_build(cfg),
    )
    cfg = RunConfig(method="ctkd", epochs=3, teacher_epochs=1, device="cpu", batch_size=256)
    Trainer(cfg).run()
    m = built[-1]
    assert seen["epochs"] == [(1, 3), (2, 3), (3, 3)]
    steps_per_epoch = -(-1293 // 256)  # digits: 1,293 training images once the validation share is out
    assert seen["steps"] == [(i, 3 * steps_per_epoch) for i in range(3 * steps_per_epoch)]
    assert m.module.raw.item() != 1.0  # the temperature's parameter was optimised


def test_a_last_batch_of_one_example_trains_rkd_and_a_flat_fitnet_adapter(monkeypatch):
    """1,293 digits images at batch 68 leave a last batch of one: no distances among one example,
    no BatchNorm statistics of one; those terms are 0 for it and the run trains on."""
    from kd.trainer import Trainer

    for method in ("rkd", "fitnet"):
        cfg = RunConfig(method=method, epochs=1, teacher_epochs=1, batch_size=68, device="cpu")
        assert 1293 % 68 == 1
        result = Trainer(cfg).run()
        assert result.status == "done", (method, result.stages["student"].message)
