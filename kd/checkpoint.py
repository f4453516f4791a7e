"""Where a stage stood at the end of an epoch, saved so a run can go on from there exactly.

A checkpoint holds the model's weights, the parameters a method owns (an adapter, a learned
temperature), the optimizer's state (the method's parameters after the model's), and the random generators'
states (batch order, jitter, torch's global generator for dropout). It is one safetensors file
(tensors only: loading it cannot run code) with the scalars in its metadata, written to a
temporary name and renamed, so a crash leaves the previous checkpoint or the new one, never half
of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

FORMAT = "kd-checkpoint-1"


@dataclass
class Checkpoint:
    stage: str  # teacher | baseline | student
    epoch: int  # epochs completed in this stage
    step: int  # optimizer steps taken in this stage
    seconds: float  # training time spent in this stage so far
    model: dict[str, Tensor]  # state_dict
    optimizer: dict  # optimizer.state_dict()
    rng: dict[str, Tensor] = field(default_factory=dict)  # generator states (uint8 tensors)
    method: dict[str, Tensor] = field(default_factory=dict)  # state_dict of the method's own parameters


def _cpu(t: Tensor) -> Tensor:
    return t.detach().to("cpu").contiguous().clone()


def capture(
    stage: str,
    epoch: int,
    step: int,
    seconds: float,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: dict[str, Tensor],
    method: torch.nn.Module | None = None,
) -> Checkpoint:
    """A CPU copy of everything, so training can go on while it is written."""
    opt = optimizer.state_dict()
    opt_state = {i: {k: _cpu(v) if isinstance(v, Tensor) else v for k, v in s.items()} for i, s in opt["state"].items()}
    return Checkpoint(
        stage,
        epoch,
        step,
        seconds,
        {k: _cpu(v) for k, v in model.state_dict().items()},
        {"state": opt_state, "param_groups": opt["param_groups"]},
        {k: _cpu(v) for k, v in rng.items()},
        {k: _cpu(v) for k, v in method.state_dict().items()} if method is not None else {},
    )


def save(ckpt: Checkpoint, path: Path, extra: dict | None = None) -> None:
    from safetensors.torch import save_file

    tensors = {f"model/{k}": v for k, v in ckpt.model.items()}
    tensors.update({f"rng/{k}": v for k, v in ckpt.rng.items()})
    tensors.update({f"method/{k}": v for k, v in ckpt.method.items()})
    scalars: dict[str, dict] = {}
    for i, s in ckpt.optimizer["state"].items():
        for k, v in s.items():
            if isinstance(v, Tensor):
                tensors[f"optimizer/{i}/{k}"] = v
            else:
                scalars.setdefault(str(i), {})[k] = v
    meta = {
        "format": FORMAT,
        "stage": ckpt.stage,
        "epoch": ckpt.epoch,
        "step": ckpt.step,
        "seconds": ckpt.seconds,
        "param_groups": ckpt.optimizer["param_groups"],
        "optimizer_scalars": scalars,
        **(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        save_file(tensors, str(tmp), metadata={"kd": json.dumps(meta)})
        with open(tmp, "rb") as f:  # on disk before the rename makes it the checkpoint
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a write that failed (a full disk) leaves no half file


def load(path: Path) -> tuple[Checkpoint, dict]:
    """The checkpoint and its metadata (the extra keys given to save)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = json.loads((f.metadata() or {}).get("kd", "{}"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a kd checkpoint")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("model/")}
    rng = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("rng/")}
    method = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("method/")}
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optimizer/"):
            _, i, name = k.split("/", 2)
            state.setdefault(int(i), {})[name] = v
    for i, s in meta["optimizer_scalars"].items():
        state.setdefault(int(i), {}).update(s)
    ckpt = Checkpoint(
        meta["stage"],
        meta["epoch"],
        meta["step"],
        meta["seconds"],
        model,
        {"state": state, "param_groups": meta["param_groups"]},
        rng,
        method,
    )
    return ckpt, meta
