"""Code that exists only for speed, each part beside the public torch path it replaces.

The trainer's step is autograd and `optimizer.step()`. Three parts skip work on that path
(tests/test_fastpath.py trains whole runs with each part off and compares):

- `adam`: `Stepper` calls torch's fused Adam/AdamW kernel (`torch._fused_adam_`, a private
  name) directly on the optimizer's own state, without the Python that `optimizer.step()` runs
  before reaching the same kernel: the same bits. Fallback: `optimizer.step()` (SGD, a torch
  without the kernel, a parameter without a gradient).
- `mlp`: `MLPStep` runs a plain MLP's forward and backward pass (Flatten, Linear, ReLU) without
  autograd, with the same kernels in the same order: the same bits. Fallback: autograd (dropout,
  convolutions, batch norm, a frozen layer, a forward hook). `GroupMLPStep` does the same for K
  such students stacked in lockstep (kd/lockstep.py) with batched matmuls. Fallback: vmap and
  autograd; the same numbers within float tolerance.
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
import torch.nn.functional as F
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
        plan = _plain_mlp(model)
        if plan is None:
            return None
        layers, flatten = plan
        return cls([(m.weight, m.bias, relu) for _, m, relu in layers], flatten)

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


class GroupMLPStep:
    """MLPStep for K plain MLPs of one architecture trained in lockstep (kd/lockstep.py), their
    weights stacked (K, out, in) and biases (K, out). Every layer's output is kept feature-major,
    (K, out, B) = W @ input^T + b: on a CPU a matmul with the batch as its short last dimension
    runs well above one with the batch as its rows, and the logits come out class-major, as the
    written-out softmaxes want them (kd.fastpath.softmax). Students who see the same batches (one
    seed: the same data order) sit together, `shares` of them: their first layers, where most of
    an MLP's arithmetic is, are one wide matmul (shares * out, in) @ (in, B) per batch. Without it
    the group runs torch.func's functional_call under vmap and autograd: the same numbers within
    float tolerance (tests/test_lockstep.py checks both)."""

    def __init__(self, layers: list[tuple[Tensor, Tensor | None, bool]], flatten: bool = True, shares: int = 1):
        self.flatten = flatten
        self.params = layers  # (stacked weight, stacked bias or None, ReLU after it): the Parameters
        self.k = layers[0][0].shape[0]
        self.shares = shares if self.k % shares == 0 else 1
        # Detached (K, out, in) weights, their (K, in, out) transposes, (K, out, 1) biases.
        self.layers = [
            (w.detach(), w.detach().transpose(1, 2), None if b is None else b.detach().unsqueeze(2), relu)
            for w, b, relu in layers
        ]
        w, b = layers[0][0].detach(), layers[0][1]
        groups, width = self.k // self.shares, self.shares * w.shape[1]
        self.first = w.view(groups, width, -1)  # per shared batch: (shares * out, in)
        self.first_b = None if b is None else b.detach().view(groups, width, 1)
        self.inputs: list[Tensor] = []  # each layer's input, feature-major (the first: (S, B, in))
        self.output: Tensor | None = None

    @classmethod
    def of(cls, model: nn.Module, stacked: dict[str, Tensor], prefix: str = "", shares: int = 1) -> GroupMLPStep | None:
        """A GroupMLPStep over the stacked parameters (`prefix` + the model's parameter names ->
        (K, ...) tensors) of K copies of `model`, or None where vmap and autograd must serve (as
        for MLPStep.of). `shares`: how many adjacent students see each batch."""
        plan = _plain_mlp(model)
        if plan is None:
            return None
        layers, flatten = plan
        out = []
        for name, m, relu in layers:
            bias = None if m.bias is None else stacked[f"{prefix}{name}.bias"]
            out.append((stacked[f"{prefix}{name}.weight"], bias, relu))
        return cls(out, flatten, shares)

    def forward(self, x: Tensor, keep: bool = True) -> Tensor:
        """(K, B, classes) logits, a transposed view of (K, classes, B), of (K / shares, B, *shape)
        inputs, one batch per run of students that share it; `keep=False` for an evaluation that
        no backward pass follows."""
        x = x.detach()
        x = x.reshape(x.shape[0], x.shape[1], -1) if self.flatten else x
        inputs = [x]
        h = self._first(x)  # (K, out, B)
        for k, (w, _, b, relu) in enumerate(self.layers):
            if k:
                inputs.append(h)
                h = torch.baddbmm(b, w, h) if b is not None else torch.bmm(w, h)
            if relu:
                h.relu_()
        if keep:
            self.inputs, self.output = inputs, h
        return h.transpose(1, 2)

    def _first(self, x: Tensor) -> Tensor:
        """The first layer of every student, (K, out, B), from the (S, B, in) shared batches: a
        matmul per batch (for a few wide ones a loop of mm beats bmm on a CPU)."""
        s, batch, _ = x.shape
        out = x.new_empty(s, self.first.shape[1], batch)
        for i in range(s):
            torch.mm(self.first[i], x[i].t(), out=out[i])
        if self.first_b is not None:  # added after: addmm into out= with a column bias runs slower
            out.add_(self.first_b)
        return out.view(self.k, -1, batch)

    def backward(self, grad: Tensor) -> None:
        """Set .grad of every stacked weight and bias from the (K, B, classes) gradient in the logits."""
        g = grad.detach().transpose(1, 2)  # (K, out, B)
        for k in range(len(self.layers) - 1, -1, -1):
            w, wt, _, relu = self.layers[k]
            weight, bias, _ = self.params[k]
            if relu:
                after = self.inputs[k + 1] if k + 1 < len(self.layers) else self.output
                g = torch.ops.aten.threshold_backward(g, after, 0)
            if bias is not None:
                bias.grad = g.sum(2)
            if k:
                weight.grad = torch.bmm(g, self.inputs[k].transpose(1, 2))
                g = torch.bmm(wt, g)  # (K, in, B)
                continue
            x = self.inputs[0]  # (S, B, in)
            gs = g.reshape(x.shape[0], -1, x.shape[1])  # (S, shares * out, B)
            wgrad = weight.new_empty(self.first.shape)
            for i in range(x.shape[0]):
                torch.mm(gs[i], x[i], out=wgrad[i])
            weight.grad = wgrad.view_as(weight)
        self.inputs, self.output = [], None


# Softmax, log-softmax and cross-entropy over the last dimension. For logits whose classes are
# not the contiguous dimension (GroupMLPStep's are class-major), torch's CPU kernels first copy the
# tensor and then walk it a row at a time, which for a few classes costs several times these
# elementwise ops and reductions over the whole tensor; for any other layout they are torch's own.
# The written-out gradients (kd.losses) and the loss terms of the methods that offer one use them.


def softmax(z: Tensor) -> Tensor:
    """torch.softmax(z, -1), written out for class-major logits."""
    if z.stride(-1) == 1:
        return torch.softmax(z, -1)
    e = (z - z.amax(-1, keepdim=True)).exp_()
    return e.div_(e.sum(-1, keepdim=True))


def log_softmax(z: Tensor) -> Tensor:
    """F.log_softmax(z, -1), written out for class-major logits."""
    if z.stride(-1) == 1:
        return F.log_softmax(z, -1)
    shifted = z - z.amax(-1, keepdim=True)
    return shifted - shifted.exp().sum(-1, keepdim=True).log()


def cross_entropy(z: Tensor, y: Tensor) -> Tensor:
    """F.cross_entropy(z, y) (mean over the batch) for (B, C) logits, written out for class-major ones."""
    if z.stride(-1) == 1:
        return F.cross_entropy(z, y)
    return -log_softmax(z).gather(-1, y.unsqueeze(-1)).mean()


def _plain_mlp(model: nn.Module) -> tuple[list[tuple[str, nn.Linear, bool]], bool] | None:
    """A plain MLP's layers, [(module name, its nn.Linear, ReLU after it)], and whether a
    nn.Flatten leads; None where the `mlp` part is off, or the model is something else (dropout,
    a frozen layer...), or a hook watches one of its modules."""
    if not enabled("mlp") or type(model) is not nn.Sequential or _hooked(model):
        return None
    modules = list(model.named_children())
    first = modules[0][1] if modules else None
    flatten = type(first) is nn.Flatten and first.start_dim == 1 and first.end_dim == -1
    if flatten:
        modules = modules[1:]
    layers: list[list] = []
    for name, m in modules:
        if _hooked(m):
            return None
        if type(m) is nn.Linear and m.weight.requires_grad and (m.bias is None or m.bias.requires_grad):
            layers.append([name, m, False])
        elif type(m) is nn.ReLU and layers and not layers[-1][2]:
            layers[-1][2] = True
        else:
            return None
    if not layers:
        return None
    return [tuple(layer) for layer in layers], flatten


def _hooked(m: nn.Module) -> bool:
    """Whether a hook is registered on the module (a Tap, a user's hook): autograd must serve."""
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)
