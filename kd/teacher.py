"""What a method needs from the frozen teacher, computed once when the inputs never change.

For every training example the teacher's logits go through the method's `prepare` (for `kd`, the
softened log-probabilities) and, for a feature method, the features at its teacher taps through
its optional `prepare_features` (attention transfer keeps only the attention maps). Without
augmentation that is done once, in chunks, and kept on the device, if the features fit in
KD_MAX_CACHE_MB; otherwise (and for inputs shifted anew each batch) the teacher runs on each
batch. `note` says which, and how big the kept outputs are.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kd.features import Tap
from kd.limits import env_limit, human_bytes

CHUNK = 2048  # examples per teacher forward pass when computing the cache


def _bytes(value) -> int:
    if value is None:
        return 0
    if isinstance(value, dict):
        return sum(_bytes(v) for v in value.values())
    return value.numel() * value.element_size()


def _cat(parts: list):
    if isinstance(parts[0], dict):
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(parts)


def _shape(t: Tensor) -> str:
    return "×".join(map(str, t.shape[1:])) or "1"


class TeacherSide:
    """`batch(x)`: (prepared logits, prepared features or None) for a batch of inputs, computed
    now; `cache(x_train)` computes them for every example; `logits` and `features` then hold them."""

    def __init__(self, method, teacher: nn.Module):
        self.method, self.teacher = method, teacher
        self.taps = tuple(getattr(method, "taps", {}).get("teacher", ()))
        self.logits: Tensor | None = None  # (N, ...) for every training example, when cached
        self.features: dict[str, Tensor] | None = None  # tap -> (N, ...), when cached
        self.note = ""

    def batch(self, x: Tensor):
        with torch.no_grad():
            if not self.taps:
                return self.method.prepare(self.teacher(x)), None
            with Tap(self.teacher, self.taps, "teacher") as tap:
                logits = self.teacher(x)
            feats = dict(tap.out)
            prepare = getattr(self.method, "prepare_features", None)
            return self.method.prepare(logits), (prepare(feats) if prepare else feats)

    def cache(self, x: Tensor) -> None:
        """Compute the teacher's side for every example of x, keeping the features only if all of
        them fit in KD_MAX_CACHE_MB (checked after the first chunk, before the rest is computed)."""
        budget = env_limit("KD_MAX_CACHE_MB", 1024, zero_ok=True) * 2**20
        n = len(x)
        logits, feats = [], []
        keep_features = bool(self.taps)
        for i in range(0, n, CHUNK):
            side, f = self.batch(x[i : i + CHUNK])
            logits.append(side)
            if keep_features:
                if i == 0 and _bytes(f) * n / len(side) > budget:
                    keep_features = False
                    per_example = _bytes(f) // len(side)
                    self.note = (
                        f"; features at {', '.join(self.taps)} ({human_bytes(per_example * n)} for all "
                        f"{n:,}) exceed KD_MAX_CACHE_MB ({budget / 2**20:g}): the teacher runs on each batch"
                    )
                    feats = []
                else:
                    feats.append(f)
        self.logits = _cat(logits)
        kept = [f"logits {_shape(self.logits)} ({human_bytes(_bytes(self.logits))})"]
        if keep_features:
            self.features = _cat(feats)
            kept += [f"{k} {_shape(v)} ({human_bytes(_bytes(v))})" for k, v in self.features.items()]
        self.note = f"teacher outputs computed once for {n:,} examples: {', '.join(kept)}" + self.note

    @property
    def needs_teacher_per_batch(self) -> bool:
        return self.logits is None or (bool(self.taps) and self.features is None)
