"""Students in lockstep (kd/lockstep.py) end as each would trained alone by the trainer."""

import pytest
import torch
from safetensors.torch import save_file

from kd import data as datasets
from kd import lockstep
from kd.config import RunConfig
from kd.trainer import Trainer

TOL = 1e-5  # batched kernels round in another order than one student's


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """A teacher of the default pair trained for two epochs, and one of the conv pair."""
    out = {}
    pairs = {"mlp": RunConfig(epochs=2), "cnn": RunConfig(epochs=1, teacher="cnn-x0.5", student="cnn-x0.25")}
    for name, cfg in pairs.items():
        teacher = Trainer(cfg).run().models["teacher"]
        path = tmp_path_factory.mktemp("teacher") / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(path))
        out[name] = str(path)
    return out


def _alone(cfg: RunConfig) -> tuple[torch.nn.Module, list[dict]]:
    events = []
    result = Trainer(cfg, emit=events.append).run()
    return result.models["student"], [e for e in events if e["kind"] == "epoch" and e["stage"] == "student"]


def _group(cfgs: list[RunConfig], keep: list | None = None):
    cfg = cfgs[0]
    spec = datasets.spec(cfg.dataset, None, cfg.image_size)
    bundle = datasets.load(cfg.dataset, None, cfg.val_fraction, cfg.image_size)
    teacher = Trainer(cfg)._build(cfg.teacher, spec, cfg.seed)
    from kd.trainer import load_teacher_weights

    load_teacher_weights(teacher, cfg.teacher_checkpoint, cfg.teacher)
    teacher.eval().requires_grad_(False)
    events: dict[int, list] = {}
    group = lockstep.Group(
        cfgs,
        spec,
        bundle.x_train,
        bundle.y_train,
        bundle.x_val,
        bundle.y_val,
        teacher,
        torch.device("cpu"),
        emit=lambda k, e: events.setdefault(k, []).append(e),
    )
    if keep is not None:
        keep.append(group)
    return group.train(), events


def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


CASES = {
    "kd": ({}, [dict(temperature=1.0, alpha=0.5, seed=0), dict(temperature=8.0, alpha=0.9, seed=1)]),
    "kd standardized": ({"standardize": True}, [dict(temperature=2.0), dict(temperature=4.0, seed=2)]),
    "none": ({"method": "none"}, [dict(seed=0), dict(seed=1)]),
    "dkd": ({"method": "dkd"}, [dict(temperature=1.0, options={"dkd_beta": 2.0}), dict(options={"dkd_beta": 8.0})]),
    "dist": ({"method": "dist"}, [dict(seed=0), dict(seed=3, options={"dist_tau": 2.0})]),
    "ctkd": ({"method": "ctkd", "options": {"ctkd_ramp": 2}}, [dict(alpha=0.5), dict(alpha=0.9, seed=1)]),
    "fitnet": ({"method": "fitnet"}, [dict(seed=0), dict(seed=1, options={"fitnet_weight": 10.0})]),
    "rkd": ({"method": "rkd"}, [dict(seed=0), dict(seed=1, options={"rkd_angle": 1.0})]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_student_of_a_group_ends_as_it_would_alone(case, teacher_file):
    common, members = CASES[case]
    base = RunConfig(epochs=2, teacher_checkpoint=teacher_file["mlp"], **common)
    cfgs = []
    for m in members:
        options = {**(base.options or {}), **m.get("options", {})} or None
        cfgs.append(base.replace(**{k: v for k, v in m.items() if k != "options"}, options=options))
    ends, events = _group(cfgs)
    for j, cfg in enumerate(cfgs):
        model, epochs = _alone(cfg)
        assert ends[j].status == "done" and ends[j].epochs == 2
        assert _max_diff(ends[j].model, model) < TOL, (case, j)
        mine = [e for e in events[j] if e["kind"] == "epoch"]
        assert [e["val_acc"] for e in mine] == pytest.approx([e["val_acc"] for e in epochs], abs=1e-9)
        if case == "ctkd":  # the learned temperature, per student
            assert mine[-1]["method"]["T"] == pytest.approx(epochs[-1]["method"]["T"], abs=1e-5)


@pytest.mark.parametrize("fast", ["all", "none"])
def test_mlp_students_step_alike_on_batched_matmuls_and_on_vmap(fast, teacher_file, monkeypatch):
    """Plain MLPs with a written-out gradient take kd.fastpath.GroupMLPStep (class-major logits,
    one first-layer matmul per seed's batch, no vmap, no autograd); with $KD_FAST_PATH=none,
    vmap and autograd. Each ends as alone, and its logged loss terms are the ones its weights give."""
    monkeypatch.setenv("KD_FAST_PATH", fast)
    base = RunConfig(epochs=2, teacher_checkpoint=teacher_file["mlp"])
    knobs = ((1.0, 0.5, 0), (4.0, 0.9, 0), (8.0, 0.7, 1), (2.0, 0.3, 1))
    cfgs = [base.replace(temperature=t, alpha=a, seed=s) for t, a, s in knobs]
    kept: list = []
    ends, events = _group(cfgs, kept)
    assert (kept[0].fast is not None) == (fast == "all")
    if fast == "all":  # two students per seed: each pair's first layer is one matmul on their one batch
        assert kept[0].fast.shares == 2
    for j, cfg in enumerate(cfgs):
        model, epochs = _alone(cfg)
        assert ends[j].status == "done"
        assert _max_diff(ends[j].model, model) < TOL, j
        mine = [e for e in events[j] if e["kind"] == "epoch"]
        assert [e["val_loss"] for e in mine] == pytest.approx([e["val_loss"] for e in epochs], abs=1e-5)
        steps = [e for e in events[j] if e["kind"] == "step"]
        assert len(steps) == 2 * lockstep.Group.windows and all({"loss_ce", "loss_soft"} <= set(e) for e in steps)
        assert all(0 < e["loss"] < 10 for e in steps)


def test_a_conv_group_with_batch_norm_keeps_each_students_statistics(teacher_file):
    base = RunConfig(epochs=1, teacher="cnn-x0.5", student="cnn-x0.25", teacher_checkpoint=teacher_file["cnn"])
    cfgs = [base.replace(method="at"), base.replace(method="at", seed=1, options={"at_weight": 100.0})]
    ends, _ = _group(cfgs)
    for j, cfg in enumerate(cfgs):
        model, _ = _alone(cfg)
        assert _max_diff(ends[j].model, model) < 1e-4  # running means and variances included


@pytest.mark.parametrize("decay", [0.0, 0.01])  # AdamW's decay must not move a frozen student either
def test_a_student_whose_loss_blows_up_stops_alone_and_the_others_go_on(teacher_file, decay):
    """Student 1's weights turn NaN early in epoch 2 (as a blown-up step leaves them): it ends
    "diverged" with its epoch-1 weights, and student 0 trains on as it would alone."""
    base = RunConfig(epochs=2, teacher_checkpoint=teacher_file["mlp"], weight_decay=decay)
    cfgs = [base, base.replace(seed=1, temperature=2.0)]
    spec = datasets.spec(base.dataset, None, base.image_size)
    bundle = datasets.load(base.dataset, None, base.val_fraction, base.image_size)
    teacher = _alone(base.replace(epochs=1))[0]  # any frozen model of the right shape will do
    seen, kept = [], {}

    def emit(k, e):
        seen.append((k, e))
        if k == 1 and e["kind"] == "epoch":
            kept.update({n: p[1].clone() for n, p in group.params.items()})
        spoiled = any(torch.isnan(p).any() for p in group.params.values())
        if k == 1 and e["kind"] == "step" and e["epoch"] == 2 and not spoiled:
            with torch.no_grad():
                next(iter(group.params.values()))[1].fill_(float("nan"))

    teacher.eval().requires_grad_(False)
    group = lockstep.Group(
        cfgs, spec, bundle.x_train, bundle.y_train, bundle.x_val, bundle.y_val, teacher, torch.device("cpu"), emit
    )
    # (this teacher is not the file's, so student 0 is compared with a group of its own)
    ends = group.train()
    assert ends[1].status == "diverged" and ends[1].epochs == 1 and "non-finite" in ends[1].message
    for name, value in ends[1].model.state_dict().items():
        assert torch.equal(value, kept["student." + name])  # its epoch-1 weights, finite
    assert [e["epoch"] for k, e in seen if k == 1 and e["kind"] == "epoch"] == [1]
    alone = lockstep.Group(
        cfgs[:1], spec, bundle.x_train, bundle.y_train, bundle.x_val, bundle.y_val, teacher, torch.device("cpu")
    ).train()
    assert ends[0].status == "done" and _max_diff(ends[0].model, alone[0].model) < TOL


def test_who_can_share_a_group():
    base = RunConfig()
    assert lockstep.group_key(base) == lockstep.group_key(base.replace(temperature=1.0, alpha=0.5, seed=7))
    assert lockstep.group_key(base) != lockstep.group_key(base.replace(epochs=3))
    assert lockstep.group_key(base) != lockstep.group_key(base.replace(student="hinton-800"))
    dkd = base.replace(method="dkd")
    assert lockstep.group_key(dkd.replace(options={"dkd_beta": 2.0})) == lockstep.group_key(dkd)
    assert lockstep.group_key(dkd.replace(options={"dkd_warmup": 3})) != lockstep.group_key(dkd)
    at, ctkd = base.replace(method="at"), base.replace(method="ctkd")  # knobs shared by a group
    assert lockstep.group_key(at.replace(options={"at_p": 4.0})) != lockstep.group_key(at)  # the teacher's maps
    assert lockstep.group_key(at.replace(options={"at_weight": 10.0})) == lockstep.group_key(at)
    assert lockstep.group_key(ctkd.replace(options={"ctkd_t_start": 2.0})) != lockstep.group_key(ctkd)  # its module
    assert lockstep.group_key(ctkd.replace(alpha=0.5)) == lockstep.group_key(ctkd)
    from kd import models

    assert not lockstep.can_share(models.build("hinton-1200", (784,), 10))  # dropout
    assert lockstep.can_share(models.build("cnn-x0.25", (1, 8, 8), 10))
