"""Code that exists only for speed, each part beside the public torch path it replaces.

The trainer's step is autograd and `optimizer.step()`. Three parts skip work on that path
(tests/test_fastpath.py trains whole runs with each part off and compares):

- `adam`: `Stepper` calls torch's fused Adam/AdamW kernel (`torch._fused_adam_`, a private
  name) directly on the optimizer's own state, without the Python that `optimizer.step()` runs
  before reaching the same kernel: the same bits. Fallback: `optimizer.step()` (SGD, a torch
  without the kernel, a parameter without a gradient).
- `mlp`: `MLPStep` runs a plain MLP's forward and backward pass (Flatten, Linear, ReLU) without
  autograd, with the same kernels in the same order: the same bits. Fallback: autograd (dropout,
  convolutions, batch norm, a frozen layer, a forward hook).
- `grad`: a method may give the gradient of its loss in the logits written out (`kd` and `none`
  do); the trainer then calls `logits.backward(grad)` instead of building the loss's graph.
  Fallback: the method's own loss through autograd, which every method has. The same formula
  rounded in another order: the same run within float tolerance, not the same bits
  (tests/test_losses.py checks each written-out gradient against autograd).

$KD_FAST_PATH chooses: unset or "all" for every part, "none" (or "0") for the public path only,
or a comma list of the parts to keep ("adam,grad"). What each part buys of an epoch is measured by
`python bench/fastpath.py`; docs/benchmarks.md, "What the fast paths buy", cites the figures.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from kd.errors import KDError
from kd.optim import match_layout

PARTS = ("adam", "mlp", "grad")


def enabled(part: str) -> bool:
    """Whether the fast-path part `part` (one of PARTS) is on, per $KD_FAST_PATH."""
    value = os.environ.get("KD_FAST_PATH", "all").strip().lower()
    if value in ("", "all", "1"):
        return True
    if value in ("none", "0"):
        return False
    chosen = {p.strip() for p in value.split(",") if p.strip()}
    unknown = chosen - set(PARTS)
    if unknown:
        raise KDError(
            f"KD_FAST_PATH: unknown part(s) {', '.join(sorted(unknown))}; use all, none or a list of {', '.join(PARTS)}"
        )
    return part in chosen


def written_gradient(method):
    """The method's written-out gradient in the logits, or None: the trainer then uses autograd."""
    return getattr(method, "grad", None) if enabled("grad") else None


KERNELS = {torch.optim.Adam: "_fused_adam_", torch.optim.AdamW: "_fused_adamw_"}


class Stepper:
    """`zero_grad()` and `step(lr)` for the training loop: torch's fused Adam kernel called
    directly where it applies, else `optimizer.step()`. `optimizer.state_dict()` stays valid
    for checkpoints either way."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        match_layout(optimizer, self.params)
        group = optimizer.param_groups[0]
        name = KERNELS.get(type(optimizer))
        self.kernel = getattr(torch, name, None) if name and enabled("adam") else None
        if (
            self.kernel is None
            or len(optimizer.param_groups) != 1
            or not group.get("fused")
            or group.get("amsgrad")
            or group.get("maximize")
            or group.get("differentiable")
        ):
            self.kernel = None
            return
        for p in self.params:  # the state torch.optim.Adam(fused=True) would create on its first step
            state = optimizer.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        states = [optimizer.state[p] for p in self.params]
        self.exp_avgs = [s["exp_avg"] for s in states]
        self.exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        # Every parameter's step count as a view of one tensor: one add_ per step, not one per parameter.
        self.step_counts = torch.stack([s["step"].float() for s in states])
        for i, s in enumerate(states):
            s["step"] = self.step_counts[i]
        self.steps = [s["step"] for s in states]
        self.beta1, self.beta2 = group["betas"]
        self.eps, self.weight_decay = group["eps"], group["weight_decay"]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr  # kept current, so state_dict() and the fallback see it
        grads = [p.grad for p in self.params]
        if self.kernel is None or any(g is None for g in grads):
            self.optimizer.step()
            return
        self.step_counts.add_(1)
        self.kernel(
            self.params,
            grads,
            self.exp_avgs,
            self.exp_avg_sqs,
            [],
            self.steps,
            lr=lr,
            beta1=self.beta1,
            beta2=self.beta2,
            weight_decay=self.weight_decay,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )


class MLPStep:
    """A plain MLP's step without autograd: `forward(x)` keeps what `backward(dlogits)` needs;
    backward sets each parameter's .grad. Per layer the backward pass is one matmul for the
    weight's gradient, one sum for the bias's, and one matmul and the ReLU's mask for the layer's
    input: the kernels autograd runs, in its order, without recording and walking a graph."""

    def __init__(self, layers: list[tuple[Tensor, Tensor | None, bool]], flatten: bool = True):
        self.flatten = flatten  # a leading nn.Flatten: (B, *shape) -> (B, D)
        self.params = layers  # (weight, bias or None, ReLU after it): the Parameters, for .grad
        # Detached views of the same storage (the optimizer's in-place updates show through):
        # ops on them record no graph, with no no_grad() context per call; W^T made once.
        self.layers = [(w.detach(), w.detach().t(), None if b is None else b.detach(), relu) for w, b, relu in layers]
        self.inputs: list[Tensor] = []  # each layer's input, from the last forward
        self.output: Tensor | None = None

    @classmethod
    def of(cls, model: nn.Module) -> MLPStep | None:
        """An MLPStep over the model's own parameters, or None where autograd must serve: the
        part is off, or the model is not a plain MLP, or a hook watches one of its modules."""
        if not enabled("mlp") or type(model) is not nn.Sequential or _hooked(model):
            return None
        modules = list(model)
        flatten = (
            bool(modules) and type(modules[0]) is nn.Flatten and modules[0].start_dim == 1 and modules[0].end_dim == -1
        )
        if flatten:
            modules = modules[1:]
        layers: list[list] = []
        for m in modules:
            if _hooked(m):
                return None
            if type(m) is nn.Linear and m.weight.requires_grad and (m.bias is None or m.bias.requires_grad):
                layers.append([m.weight, m.bias, False])
            elif type(m) is nn.ReLU and layers and not layers[-1][2]:
                layers[-1][2] = True
            else:
                return None
        if not layers:
            return None
        return cls([tuple(layer) for layer in layers], flatten)

    def forward(self, x: Tensor) -> Tensor:
        h = x.detach().reshape(len(x), -1) if self.flatten else x.detach()
        self.inputs = []
        for _, wt, b, relu in self.layers:
            self.inputs.append(h)
            h = torch.addmm(b, h, wt) if b is not None else torch.mm(h, wt)
            if relu:
                h.relu_()
        self.output = h
        return h

    def backward(self, grad: Tensor) -> None:
        """Set .grad of every weight and bias from the gradient in the logits."""
        grad = grad.detach()
        for k in range(len(self.layers) - 1, -1, -1):
            w, _, _, relu = self.layers[k]
            weight, bias, _ = self.params[k]
            if relu:  # the ReLU's output is the next layer's input (or the logits)
                after = self.inputs[k + 1] if k + 1 < len(self.layers) else self.output
                grad = torch.ops.aten.threshold_backward(grad, after, 0)  # autograd's own ReLU backward
            weight.grad = torch.mm(grad.t(), self.inputs[k])
            if bias is not None:
                bias.grad = grad.sum(0)
            if k:
                grad = torch.mm(grad, w)
        self.inputs, self.output = [], None


def _hooked(m: nn.Module) -> bool:
    """Whether a hook is registered on the module (a Tap, a user's hook): autograd must serve."""
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)
