"""kd/fastpath.py against the public path it replaces: the same bits, every part.

Stepper (torch's fused Adam kernel called directly) against `optimizer.step()`; MLPStep (an
MLP's forward and backward written out) against autograd; a whole run with $KD_FAST_PATH=none
against the default."""

import copy

import pytest
import torch
from torch import nn

from kd import models, trainer
from kd.config import RunConfig
from kd.errors import KDError
from kd.fastpath import PARTS, MLPStep, Stepper, enabled
from kd.losses import kd_grad, soft_targets
from kd.optim import cosine
from kd.trainer import Trainer

SHAPE = (1, 28, 28)


def _grads_both_ways(model: nn.Module, x: torch.Tensor, step: MLPStep):
    """(logits, grads) from autograd, then from the MLPStep, for one KD gradient in the logits."""
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 10, (len(x),), generator=g)
    t = soft_targets(torch.randn(len(x), 10, generator=g), 4.0)
    logits = model(x)
    logits.backward(kd_grad(logits.detach(), t, y, 4.0, 0.7))
    ref = [p.grad.clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    mine = step.forward(x)
    step.backward(kd_grad(mine, t, y, 4.0, 0.7))
    return (logits.detach(), ref), (mine, [p.grad for p in model.parameters()])


@pytest.mark.parametrize("arch", sorted(models.MODELS.keys()))
def test_every_plain_mlp_gets_autograds_exact_logits_and_gradients(arch):
    torch.manual_seed(0)
    for shape in (SHAPE, (3, 32, 32), (1, 64)):  # the first shape it takes (an MLP takes 28x28)
        try:
            model = models.build(arch, shape, 10)
            break
        except Exception:
            continue
    step = MLPStep.of(model)
    plain = {"mlp-512-256", "mlp-128", "hinton-800"}  # hinton-1200 has dropout: autograd
    assert (step is not None) == (arch in plain)
    if step is None:
        return
    x = torch.rand(37, *SHAPE)  # an odd batch, like an epoch's last
    (la, ga), (lb, gb) = _grads_both_ways(model, x, step)
    assert torch.equal(la, lb)
    assert len(ga) == len(gb) and all(torch.equal(a, b) for a, b in zip(ga, gb))


def test_a_relu_after_the_last_layer_and_a_layer_without_bias():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(784, 32, bias=False), nn.ReLU(), nn.Linear(32, 10), nn.ReLU(inplace=True))
    step = MLPStep.of(model)
    assert step is not None
    (la, ga), (lb, gb) = _grads_both_ways(model, torch.rand(16, 784), step)
    assert torch.equal(la, lb) and all(torch.equal(a, b) for a, b in zip(ga, gb))
    assert (lb == 0).any()  # the final ReLU really cut something, so its mask was exercised


def test_without_a_flatten_the_input_is_not_flattened():
    """nn.Linear alone acts on the last dimension; the step never flattens behind its back: a 3-D
    input is refused loudly rather than trained as something else."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    step = MLPStep.of(model)
    x = torch.rand(5, 3)
    assert torch.equal(step.forward(x), model(x).detach())
    assert model(torch.rand(5, 2, 3)).shape == (5, 2, 2)
    with pytest.raises(RuntimeError):
        step.forward(torch.rand(5, 2, 3))


@pytest.mark.parametrize(
    "model",
    [
        nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 2)),
        nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.ReLU(), nn.Linear(8, 2)),
        nn.Sequential(nn.ReLU(), nn.Linear(8, 2)),
        nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)),
        nn.Sequential(nn.Flatten(0), nn.Linear(8, 2)),
        nn.Sequential(),
        nn.Linear(8, 2),
    ],
    ids=["dropout", "relu-twice", "relu-first", "tanh", "flatten-dim0", "empty", "not-sequential"],
)
def test_anything_but_a_plain_mlp_is_left_to_autograd(model):
    assert MLPStep.of(model) is None


def test_a_frozen_layer_or_a_hook_is_left_to_autograd():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    assert MLPStep.of(model) is not None
    model[0].bias.requires_grad_(False)
    assert MLPStep.of(model) is None
    model[0].bias.requires_grad_(True)
    model[2].register_forward_hook(lambda *a: None)
    assert MLPStep.of(model) is None


@pytest.mark.parametrize("teacher, student", [("mlp-512-256", "mlp-128"), ("cnn-x0.5", "cnn-x0.25")])
def test_a_whole_run_on_the_fast_path_equals_the_public_path(monkeypatch, teacher, student):
    """All three stages with every part of the fast path, then with each part off: the same run,
    and each part really ran (MLPStep for MLPs only; Adam's kernel and the written-out gradient
    for both pairs)."""
    cfg = RunConfig(
        dataset="digits",
        teacher=teacher,
        student=student,
        epochs=2,
        teacher_epochs=2,
        batch_size=64,
        seed=5,
        device="cpu",
    )
    calls = {"mlp": 0, "adam": 0, "grad": 0}
    real_backward, real_step, real_written = MLPStep.backward, Stepper.step, trainer.written_gradient

    def mlp_backward(self, grad):
        calls["mlp"] += 1
        return real_backward(self, grad)

    def step(self, lr):
        calls["adam"] += self.kernel is not None
        return real_step(self, lr)

    def written(method):
        grad = real_written(method)
        if grad is None:
            return None

        def counted(*args):
            calls["grad"] += 1
            return grad(*args)

        return counted

    monkeypatch.setattr(MLPStep, "backward", mlp_backward)
    monkeypatch.setattr(trainer, "written_gradient", written)
    monkeypatch.setattr(Stepper, "step", step)
    monkeypatch.delenv("KD_FAST_PATH", raising=False)
    fast_events = []
    fast = Trainer(cfg, emit=fast_events.append).run()
    per_epoch = [e["steps_per_epoch"] for e in fast_events if e["kind"] == "stage" and e["status"] == "started"]
    steps = 2 * sum(per_epoch)
    assert calls["adam"] == calls["grad"] == steps > 0
    assert calls["mlp"] == (steps if teacher.startswith("mlp") else 0)
    fast_calls = dict(calls)

    fast_losses = [(e["stage"], e["step"], e["loss"]) for e in fast_events if e["kind"] == "step"]
    test_size = fast_events[0]["test_size"]
    # Adam's kernel and MLPStep: the same bits as the public path. The written-out gradient: the
    # same formula, rounded in another order, so the same run within float tolerance.
    for only, same_bits in (("mlp,grad", True), ("adam,grad", True), ("none", False)):
        monkeypatch.setenv("KD_FAST_PATH", only)
        slow_events = []
        slow = Trainer(cfg, emit=slow_events.append).run()
        slow_losses = [(e["stage"], e["step"], e["loss"]) for e in slow_events if e["kind"] == "step"]
        assert [k[:2] for k in slow_losses] == [k[:2] for k in fast_losses]
        for name in ("teacher", "baseline", "student"):
            for k, v in fast.models[name].state_dict().items():
                w = slow.models[name].state_dict()[k]
                assert torch.equal(v, w) if same_bits else torch.allclose(v, w, atol=1e-4), (only, name, k)
            gap = abs(fast.metrics[name]["accuracy"] - slow.metrics[name]["accuracy"])
            assert gap == 0 if same_bits else gap <= 1 / test_size, (only, name)
        if same_bits:
            assert slow_losses == fast_losses, only
        else:
            assert max(abs(f[2] - s[2]) for f, s in zip(fast_losses, slow_losses)) < 1e-4
    assert calls["adam"] == fast_calls["adam"] + steps  # on with "adam,grad" only
    assert calls["mlp"] == fast_calls["mlp"] * 2  # on with "mlp,grad" only
    assert calls["grad"] == fast_calls["grad"] * 3  # on with both of those


def test_kd_fast_path_names_its_parts(monkeypatch):
    for value, on in [("", PARTS), ("all", PARTS), ("none", ()), ("0", ()), ("adam, grad", ("adam", "grad"))]:
        monkeypatch.setenv("KD_FAST_PATH", value)
        assert [p for p in PARTS if enabled(p)] == list(on), value
    monkeypatch.setenv("KD_FAST_PATH", "adam,jit")
    with pytest.raises(KDError, match="KD_FAST_PATH.*jit"):
        enabled("adam")


# Stepper against torch.optim itself: the same numbers, the same state.


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))


def _train(model, opt, stepper, steps: int = 25):
    g = torch.Generator().manual_seed(7)
    for i in range(steps):
        x, y = torch.randn(8, 12, generator=g), torch.randint(0, 3, (8,), generator=g)
        loss = nn.functional.cross_entropy(model(x), y)
        lr = 0.01 * cosine(i, steps)
        if stepper is None:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
        else:
            stepper.zero_grad()
            loss.backward()
            stepper.step(lr)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.Adam(p, lr=0.01, fused=True),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.05, fused=True),
        lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True),
    ],
    ids=["adam", "adamw", "sgd-fallback"],
)
def test_stepper_is_bit_identical_to_optimizer_step(make):
    a, b = _model(0), _model(0)
    opt_a, opt_b = make(a.parameters()), make(b.parameters())
    _train(a, opt_a, None)
    stepper = Stepper(opt_b)
    _train(b, opt_b, stepper)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for i in sa["state"]:
        for k, v in sa["state"][i].items():
            assert torch.equal(v, sb["state"][i][k]), (i, k)
    if isinstance(opt_b, (torch.optim.Adam, torch.optim.AdamW)):
        assert stepper.kernel is not None  # the fast path really ran


def test_a_stepper_goes_on_from_a_loaded_state_exactly():
    """Resume: a fresh optimizer given the state_dict after 10 steps continues as if never stopped."""
    a, b = _model(1), _model(1)
    opt_a = torch.optim.Adam(a.parameters(), lr=0.01, fused=True)
    _train(a, opt_a, Stepper(opt_a), steps=10)
    b.load_state_dict(a.state_dict())
    opt_b = torch.optim.Adam(b.parameters(), lr=0.01, fused=True)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as if read back from a file
    sa, sb = Stepper(opt_a), Stepper(opt_b)
    _train(a, opt_a, sa, steps=5)
    _train(b, opt_b, sb, steps=5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert float(opt_b.state[next(b.parameters())]["step"]) == 15


def test_a_parameter_without_a_gradient_falls_back_to_torch():
    model = _model(2)
    frozen_out = nn.Linear(12, 3)  # in the optimizer, never in the graph
    opt = torch.optim.Adam(list(model.parameters()) + list(frozen_out.parameters()), lr=0.01, fused=True)
    before = frozen_out.weight.clone()
    _train(model, opt, Stepper(opt), steps=3)
    assert torch.equal(frozen_out.weight, before)


def test_state_loaded_into_a_channels_last_model_goes_on_exactly():
    """A checkpoint's Adam moments are contiguous; the conv weights they are loaded into are
    channels_last. Stepper gives the moments the weights' strides: the fused kernel walks memory
    in order and would otherwise pair the wrong elements (it did, before match_layout)."""

    def conv(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 3)).to(
            memory_format=torch.channels_last
        )

    def train(model, stepper, steps, start=0):
        g = torch.Generator().manual_seed(3)
        for i in range(start + steps):
            x, y = torch.randn(4, 3, 6, 6, generator=g), torch.randint(0, 3, (4,), generator=g)
            if i < start:
                continue
            stepper.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            stepper.step(0.01)

    a, b = conv(5), conv(5)
    opt_a = torch.optim.Adam(a.parameters(), lr=0.01, fused=True)
    stepper_a = Stepper(opt_a)
    train(a, stepper_a, 6)
    saved_model = {k: v.contiguous().clone() for k, v in a.state_dict().items()}  # as a checkpoint has it
    saved_opt = copy.deepcopy(opt_a.state_dict())
    for s in saved_opt["state"].values():
        for k, v in s.items():
            s[k] = v.contiguous().clone()
    assert any(not v.is_contiguous() for s in opt_a.state.values() for v in s.values())  # it really differs
    train(a, stepper_a, 6, start=6)
    b.load_state_dict(saved_model)
    opt_b = torch.optim.Adam(b.parameters(), lr=0.01, fused=True)
    opt_b.load_state_dict(saved_opt)
    train(b, Stepper(opt_b), 6, start=6)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
