"""The optimizer the trainer builds and its learning-rate schedule.

The per-step call (`Stepper`, with torch's fused kernel called directly where it applies) is in
kd/fastpath.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn


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
