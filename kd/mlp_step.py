"""The forward and backward pass of a plain MLP written out: the step the trainer takes for MLPs.

For a Sequential of Flatten, Linear and ReLU layers (the seed note's 784-512-256-10 teacher and
784-128-10 student, hinton-800), the backward pass is, per layer, one matmul for the weight's
gradient, one sum for the bias's, one matmul for the layer's input and the ReLU's mask. Autograd
runs those same kernels (same shapes, same order: the gradients are bit-identical,
tests/test_mlp_step.py checks it), but it also records a graph node per op in the forward pass
and walks the graph in its engine; docs/benchmarks.md, "Speed against the seed note's loop", has
what skipping that saves, as measured.

Anything else (dropout, convolutions, batch norm, a frozen layer) goes through autograd:
`MLPStep.of(model)` returns None for it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MLPStep:
    """`forward(x)` keeps what `backward(dlogits)` needs; backward sets each parameter's .grad."""

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
        """An MLPStep over the model's own parameters, or None if it is not a plain MLP."""
        if type(model) is not nn.Sequential or model._forward_hooks or model._forward_pre_hooks:
            return None
        modules = list(model)
        flatten = (
            bool(modules) and type(modules[0]) is nn.Flatten and modules[0].start_dim == 1 and modules[0].end_dim == -1
        )
        if flatten:
            modules = modules[1:]
        layers: list[list] = []
        for m in modules:
            if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks:
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
                grad = torch.ops.aten.threshold_backward(grad, after, 0)
            weight.grad = torch.mm(grad.t(), self.inputs[k])
            if bias is not None:
                bias.grad = grad.sum(0)
            if k:
                grad = torch.mm(grad, w)
        self.inputs, self.output = [], None
