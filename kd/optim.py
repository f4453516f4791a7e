"""The optimizer and its per-step call, kept cheap for small models.

A step of a 100k-parameter MLP on a CPU costs well under a millisecond of arithmetic, and
`torch.optim.Adam.step()` spends about as long again in Python (hooks, profiler records,
grouping the tensors by device) before it reaches its fused kernel. `Stepper` calls that same
kernel directly, on the optimizer's own state, so the numbers are bit-identical to
`optimizer.step()` (tests/test_optim.py checks it) and `optimizer.state_dict()` stays valid
for checkpoints. Anything it does not cover (SGD, a torch without the kernel, a parameter
without a gradient) goes through `optimizer.step()` itself.
"""

from __future__ import annotations

import math

import torch
from torch import nn

KERNELS = {torch.optim.Adam: "_fused_adam_", torch.optim.AdamW: "_fused_adamw_"}


def make_optimizer(cfg, *modules: nn.Module) -> torch.optim.Optimizer:
    """Adam (AdamW with weight decay) or SGD with Nesterov momentum, fused where this torch can,
    over the trainable parameters of `modules` in order (the model's, then a method's own)."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        make = lambda **kw: torch.optim.SGD(
            params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay, **kw
        )
    elif cfg.weight_decay:
        make = lambda **kw: torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)
    else:
        make = lambda **kw: torch.optim.Adam(params, lr=cfg.lr, **kw)
    try:
        return make(fused=True)
    except (RuntimeError, TypeError, ValueError):  # an older torch, or a device without fused kernels
        return make()


def cosine(step: int, total: int) -> float:
    """The learning-rate factor: 1 at step 0 falling to 0 at `total` (half a cosine)."""
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def match_layout(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> None:
    """Give every per-parameter state tensor its parameter's strides.

    State loaded from a checkpoint is contiguous, but a channels_last conv weight (the trainer's
    layout for conv models on a CPU) is not, and torch's fused Adam walks the parameter, its
    gradient and its moments in memory order: a mismatch pairs the wrong elements, silently.
    """
    for p in params:
        state = optimizer.state.get(p, {})
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                state[k] = torch.empty_like(p).copy_(v)


class Stepper:
    """`zero_grad()` and `step(lr)` for the training loop; see the module docstring."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        match_layout(optimizer, self.params)
        group = optimizer.param_groups[0]
        name = KERNELS.get(type(optimizer))
        self.kernel = getattr(torch, name, None) if name else None
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
