"""Looking inside finished runs: load a stored model, its decision regions on a 2-D set, and
a teacher's probabilities softened at temperature T. Used by the Results and Temperature pages."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kd import data as datasets
from kd import models
from kd.store import Run, Store


def load_model(store: Store, run: Run, name: str) -> nn.Module:
    """A stored model (teacher | baseline | student) in eval mode on the CPU."""
    from safetensors.torch import load_file

    cfg = run.config
    spec = datasets.spec_for(cfg)
    arch = cfg["teacher"] if name == "teacher" else cfg["student"]
    model = models.build(arch, spec.input_shape, spec.num_classes)
    model.load_state_dict(load_file(str(store.weights_path(run.id, name)), device="cpu"))
    return model.eval()


def load_data(run: Run) -> datasets.DataBundle:
    return datasets.load_for(run.config)


@torch.no_grad()
def decision_regions(store: Store, run: Run, n: int = 150) -> dict:
    """For a 2-D data set: the predicted class of each stored model over a grid, and the test
    points, all in the data's own coordinates. {"xx", "yy", "predictions": {name: (n*n,)}, ...}"""
    bundle = load_data(run)
    xx, yy, points = datasets.grid(bundle, n=n)  # points: (n*n, 2), normalised like the inputs
    raw_grid = bundle.raw(torch.as_tensor(points, dtype=torch.float32)).numpy()
    predictions = {}
    for name in run.models:
        if store.weights_path(run.id, name).exists():
            logits = load_model(store, run, name)(torch.as_tensor(points, dtype=torch.float32))
            predictions[name] = logits.argmax(1).numpy()
    return {
        "xx": raw_grid[:, 0].reshape(np.shape(xx)),
        "yy": raw_grid[:, 1].reshape(np.shape(yy)),
        "predictions": predictions,
        "points": bundle.raw(bundle.x_test).numpy(),
        "labels": bundle.y_test.numpy(),
        "class_names": list(bundle.spec.class_names),
    }


def softened(logits: torch.Tensor, temperature: float) -> np.ndarray:
    """softmax(logits / T) for one example's logits (K,)."""
    return torch.softmax(logits.double() / temperature, dim=-1).numpy()


def entropy_curve(logits: torch.Tensor, temps: np.ndarray) -> np.ndarray:
    """Entropy in bits of softmax(logits / T) for each T: how much 'dark knowledge' T exposes."""
    p = torch.softmax(logits.double()[None, :] / torch.as_tensor(temps, dtype=torch.float64)[:, None], dim=1)
    return (-(p * torch.log2(p.clamp_min(1e-300))).sum(1)).numpy()
