"""MLPStep, the MLP forward and backward written out, against autograd: the same bits."""

import pytest
import torch
from torch import nn

from kd import models, trainer
from kd.config import RunConfig
from kd.losses import kd_grad, soft_targets
from kd.mlp_step import MLPStep
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
    try:
        model = models.build(arch, SHAPE, 10)
    except Exception:  # an architecture that cannot take 28x28 is not an MLP either
        model = models.build(arch, (3, 32, 32), 10)
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


def test_a_whole_run_by_hand_equals_the_run_through_autograd(monkeypatch):
    """The seed's pair on digits, all three stages: every loss and weight the same bits."""
    cfg = RunConfig(
        dataset="digits",
        teacher="mlp-512-256",
        student="mlp-128",
        epochs=2,
        teacher_epochs=2,
        batch_size=64,
        device="cpu",
        seed=5,
    )
    calls = []
    real_backward = MLPStep.backward

    def counted(self, grad):
        calls.append(1)
        return real_backward(self, grad)

    monkeypatch.setattr(MLPStep, "backward", counted)
    fast_events = []
    fast = Trainer(cfg, emit=fast_events.append).run()
    per_epoch = [e["steps_per_epoch"] for e in fast_events if e["kind"] == "stage" and e["status"] == "started"]
    assert len(calls) == 2 * sum(per_epoch) > 0  # every step of the three stages' two epochs
    monkeypatch.setattr(trainer.MLPStep, "of", classmethod(lambda cls, model: None))
    slow_events = []
    slow = Trainer(cfg, emit=slow_events.append).run()
    assert len(calls) == 2 * sum(per_epoch)  # autograd only this time

    losses = lambda events: [(e["stage"], e["step"], e["loss"]) for e in events if e["kind"] == "step"]
    assert losses(fast_events) == losses(slow_events)
    for name in ("teacher", "baseline", "student"):
        for k, v in fast.models[name].state_dict().items():
            assert torch.equal(v, slow.models[name].state_dict()[k]), (name, k)
        assert fast.metrics[name]["accuracy"] == slow.metrics[name]["accuracy"]
