"""Students in lockstep: the distilled students of one architecture and one method, each with
its own seed, temperature, alpha and float knobs, trained together as one batched model.

Their weights are stacked along a first dimension of size K (torch.func.stack_module_state) and
one step runs every student through `functional_call` under `vmap`: each on its own batch (the
one its seed's order gives it alone), with its own knob values, then one backward pass and one
optimizer step over the stacked tensors. Adam, AdamW and SGD act elementwise, so one optimizer
over the stack is K optimizers; the learning-rate schedule is the same for all, since they share
epochs, batch size and data. A student trained here ends as it would trained alone by kd/trainer.py
within float tolerance (batched kernels round in another order): tests/test_lockstep.py checks it.

Which cells can share a group is `group_key`'s rule: everything equal but the seed, T, alpha
and the method's float knobs (except those it lists in `group_knobs`). A student with dropout
cannot (its random masks would differ from its run alone): `can_share` says so and the sweep
trains it alone.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from kd import data as datasets
from kd import methods, models
from kd.config import RunConfig
from kd.events import Epoch, Step, to_dict
from kd.fastpath import GroupMLPStep, Stepper, written_gradient
from kd.features import Features, Tap
from kd.optim import cosine, make_optimizer
from kd.teacher import TeacherSide

PER_STUDENT = ("seed", "temperature", "alpha")  # may differ within a group, as may float method knobs


def group_key(cfg: RunConfig) -> str:
    """Cells with the same key can train in one group: all but the seed, T, alpha and the float
    method knobs agree (the architecture, the method, its other knobs, epochs, batch size...),
    and the float knobs the method lists in `group_knobs` agree too."""
    d = cfg.to_dict()
    for k in PER_STUDENT:
        d.pop(k, None)
    shared = getattr(methods.METHODS.get(cfg.method), "group_knobs", ())
    d["options"] = {k: v for k, v in (d.get("options") or {}).items() if not isinstance(v, float) or k in shared}
    d["group_knobs"] = {k: cfg.option(k) for k in shared}  # given or default: the values in force
    return repr(sorted(d.items()))


def can_share(model: nn.Module) -> bool:
    """A model trains in lockstep unless it draws random numbers in its forward pass (dropout)."""
    return not any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules())


def student_bytes(cfg: RunConfig, input_shape: tuple, num_classes: int) -> int:
    """What one student adds to a group's memory, estimated (fp32): its weights, gradient and two
    Adam moments, and one batch of its inputs and of every layer's outputs, kept for the backward
    pass and its gradients (counted twice)."""
    model = models.build(cfg.student, input_shape, num_classes)
    outputs = [0]
    hooks = [
        m.register_forward_hook(lambda mod, args, out: outputs.__setitem__(0, outputs[0] + out.numel()))
        for m in model.modules()
        if not list(m.children())
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape))
    for h in hooks:
        h.remove()
    params = sum(p.numel() for p in model.parameters())
    inputs = math.prod(input_shape)
    return 4 * (4 * params + cfg.batch_size * (inputs + 2 * outputs[0]))


class _Raw:
    """What TeacherSide caches for a group: the teacher's raw logits (each student's method
    prepares them with its own knobs, per batch) and the features as the method reduces them."""

    def __init__(self, method):
        self.taps = getattr(method, "taps", {})
        self.prepare_features = getattr(method, "prepare_features", None) or (lambda f: f)

    def prepare(self, logits: Tensor) -> Tensor:
        return logits


class _Pair(nn.Module):
    """The student and the method's own parameters as one module, so that one functional_call
    swaps in a student's slice of both; its forward is the group's step for one student."""

    def __init__(self, student: nn.Module, own: nn.Module | None, step: Callable | None = None):
        super().__init__()
        self.student = student
        self.own = own
        self.step = step

    def forward(self, *args):
        return self.step(*args)


@dataclass
class Member:
    """One student of the group when it ends: its weights, how its training ended."""

    status: str  # done | stopped | diverged
    epochs: int
    message: str
    model: nn.Module


class Group:
    """K students (one RunConfig each, all with one group_key) trained as one batched model."""

    windows = 2  # log windows per epoch, each a Step event per student and a check for non-finite loss

    def __init__(
        self,
        cfgs: list[RunConfig],
        spec: datasets.DataSpec,
        x_train: Tensor,
        y_train: Tensor,
        x_val: Tensor,
        y_val: Tensor,
        teacher: nn.Module | None,
        device: torch.device,
        emit: Callable[[int, dict], None] = lambda k, e: None,  # (student index, to_dict of an event)
        should_stop: Callable[[], bool] = lambda: False,
    ):
        keys = {group_key(c) for c in cfgs}
        if len(keys) != 1:
            raise ValueError("students of one group must differ only in seed, T, alpha and float knobs")
        self.cfgs, self.spec, self.device = cfgs, spec, device
        self.x_train, self.y_train, self.x_val, self.y_val = x_train, y_train, x_val, y_val
        self.teacher, self.emit, self.should_stop = teacher, emit, should_stop
        self.k = len(cfgs)
        shape = spec.input_shape
        # Each student exactly as the trainer builds it alone: its seed, then the method bound.
        self.students, self.methods = [], []
        for cfg in cfgs:
            torch.manual_seed(cfg.seed + 1)
            student = models.build(cfg.student, shape, spec.num_classes).to(device)
            method = methods.build(cfg)
            methods.bind(method, student, teacher, shape)
            own = getattr(method, "module", None)
            if own is not None:
                own.to(device)
            self.students.append(student)
            self.methods.append(method)
        if not all(can_share(s) for s in self.students):
            raise ValueError(f"{cfgs[0].student} draws random numbers (dropout): it cannot train in lockstep")
        self.method = self.methods[0]  # the one called under vmap, with each student's knob values
        self.knobs = self._knob_values()
        self.pair = _Pair(copy.deepcopy(self.students[0]), getattr(self.method, "module", None), self._step)
        pairs = [_Pair(s, getattr(m, "module", None)) for s, m in zip(self.students, self.methods)]
        params, self.buffers = stack_module_state(pairs)  # name -> (K, ...)
        # The trainer optimises the model's parameters, then the method's: the same order here.
        self.holder = nn.Module()
        self.holder.stack = nn.ParameterList(list(params.values()))
        self.params = dict(zip(params, self.holder.stack))  # the very tensors the optimizer steps
        self.tap, self.reads_features, self.names = None, False, []
        self.fast: GroupMLPStep | None = None  # set by train() where it applies

    def _knob_values(self) -> dict[str, Tensor]:
        """The method's float attributes that differ between students, as (K,) tensors."""
        out = {}
        for name, value in vars(self.methods[0]).items():
            if isinstance(value, float):
                values = [getattr(m, name) for m in self.methods]
                if any(v != value for v in values):
                    out[name] = torch.tensor(values, dtype=torch.float32, device=self.device)
        return out

    @contextlib.contextmanager
    def _knobs(self, values: dict):
        """The method with the given knob values set for the block, then its own put back."""
        method = self.method
        saved = {name: getattr(method, name) for name in values}
        try:
            for name, value in values.items():
                setattr(method, name, value)
            yield method
        finally:
            for name, value in saved.items():
                setattr(method, name, value)

    def _stacked_knobs(self):
        """The method with each differing knob as a (K, 1, 1) tensor, for its written-out
        gradient and `prepare` on stacked (K, B, C) logits."""
        return self._knobs({name: value.view(-1, 1, 1) for name, value in self.knobs.items()})

    def _terms(self, knobs, logits, y, t):
        """One student's loss terms (stacked) from its logits, with its knob values (under vmap)."""
        with self._knobs(knobs) as method:
            terms = method(logits, y, t)
        self.names = list(terms)
        return torch.stack(list(terms.values()))

    # -- one student's step, under vmap -------------------------------------------------
    def _one(self, params, buffers, knobs, x, y, t, t_feats):
        """(stacked loss terms, logits) of one student on its batch, with its knob values."""
        with self._knobs(knobs):
            return functional_call(self.pair, (params, buffers), (x, y, t, t_feats))

    def _step(self, x, y, t, t_feats):
        """The pair's forward (inside functional_call: the student's and the method's own
        parameters are one student's slice)."""
        method = self.method
        logits = self.pair.student(x)
        args = (logits, y, method.prepare(t) if t is not None else None)
        if self.reads_features:
            args += (Features(dict(self.tap.out) if self.tap else {}, t_feats or {}),)
        terms = method(*args)
        if self.tap is not None:
            self.tap.out.clear()
        self.names = list(terms)
        return torch.stack(list(terms.values())), logits

    def _logits(self, params, buffers, x):
        return functional_call(self.pair.student, _prefixed(params, buffers, "student."), (x,))

    # -- the loop ------------------------------------------------------------------------
    def train(self) -> list[Member]:
        cfg, dev, k = self.cfgs[0], self.device, self.k
        n = len(self.y_train)
        bs = min(cfg.batch_size, n)
        epochs = cfg.epochs
        steps_per_epoch = math.ceil(n / bs)
        total_steps = epochs * steps_per_epoch
        log_every = max(1, math.ceil(steps_per_epoch / self.windows))
        method = self.method
        optimizer = make_optimizer(cfg, self.holder)
        stepper = Stepper(optimizer)
        orders = [torch.Generator().manual_seed(2 * c.seed) for c in self.cfgs]
        jitters = [torch.Generator().manual_seed(2 * c.seed) for c in self.cfgs]
        shift = cfg.augment == "all"
        max_shift = max(1, round(self.x_train.shape[-1] / 14))
        side = TeacherSide(_Raw(method), self.teacher) if method.uses_teacher else None
        student_taps = tuple(getattr(method, "taps", {}).get("student", ()))
        self.reads_features = bool(student_taps or (side is not None and side.taps))
        if side is not None and not shift:
            side.cache(self.x_train)
        per_batch = side is not None and (shift or side.needs_teacher_per_batch)
        self.tap = Tap(self.pair.student, student_taps, "student") if student_taps else None
        # Plain MLPs with a method that writes out its gradient: batched matmuls, no vmap, no autograd.
        logit_grad = written_gradient(method)
        fast = None
        if logit_grad is not None and not self.reads_features and getattr(method, "module", None) is None:
            shares = _runs([c.seed for c in self.cfgs])
            fast = GroupMLPStep.of(self.pair.student, self.params, "student.", shares=shares)
        self.fast = fast
        shares = fast.shares if fast is not None else 1  # students in a row who see the same batches
        if fast is not None and side is not None and not per_batch:
            teacher_classes = side.logits.t().contiguous()  # (C, N)
        status = ["done"] * k
        done_epochs = [epochs] * k
        messages = [""] * k
        live = torch.ones(k, dtype=torch.bool, device=dev)  # False for a student whose loss blew up: it stops learning
        all_live = True
        state = {**self.params, **self.buffers}  # weights and BatchNorm statistics, stacked
        last_good = {name: t.detach().clone() for name, t in state.items()}
        started, step = time.perf_counter(), 0
        on_epoch = getattr(method, "on_epoch", None)
        on_step = getattr(method, "on_step", None)
        try:
            for epoch in range(1, epochs + 1):
                self.pair.train()
                if on_epoch is not None:
                    for m in self.methods:  # the first is the one called; the others report
                        m.on_epoch(epoch, epochs)
                perms = torch.stack([torch.randperm(n, generator=g) for g in orders]).to(dev)  # (K, N)
                ys = self.y_train[perms]  # (K, N)
                correct = torch.zeros(k, device=dev)
                window: list = []  # per step: its (K, terms) times its batch size, or (logits, y, t) on the fast path
                seen = window_seen = 0
                for i in range(steps_per_epoch):
                    if self.should_stop():  # the students still learning stop; diverged ones stay so
                        for j in range(k):
                            if status[j] == "done":
                                status[j], done_epochs[j], messages[j] = (
                                    "stopped",
                                    epoch - 1,
                                    f"stopped in epoch {epoch}",
                                )
                        return self._members(status, done_epochs, messages, last_good)
                    idx = perms[:, i * bs : (i + 1) * bs]  # (K, B)
                    b = idx.shape[1]
                    rows = idx[::shares]  # one batch per run of students with one seed
                    x = self.x_train.index_select(0, rows.reshape(-1)).view(len(rows), b, *self.x_train.shape[1:])
                    y = ys[:, i * bs : (i + 1) * bs]
                    if shift:
                        x = torch.stack(
                            [datasets.random_shift(x[j], max_shift, jitters[j * shares]) for j in range(len(rows))]
                        )
                    if on_step is not None:
                        on_step(step, total_steps)
                    t, t_feats = None, None
                    if per_batch:
                        t, t_feats = side.batch(x.flatten(0, 1))
                        t = t.view(len(rows), b, *t.shape[1:]).repeat_interleave(shares, 0)
                        if t_feats is not None:
                            t_feats = {n_: v.view(k, b, *v.shape[1:]) for n_, v in t_feats.items()}
                    elif fast is not None and side is not None:  # class-major, as the fast path's logits
                        t = teacher_classes.index_select(1, idx.reshape(-1)).view(-1, k, b).permute(1, 2, 0)
                    elif side is not None:
                        t = side.logits[idx]
                        if side.features is not None:
                            t_feats = {n_: v[idx] for n_, v in side.features.items()}
                    stepper.zero_grad()
                    if fast is not None:
                        with self._stacked_knobs() as stacked:
                            t = stacked.prepare(t) if t is not None else None
                            logits = fast.forward(x)
                            grad = logit_grad(logits, y, t)
                        if not all_live:
                            grad = torch.where(live.view(-1, 1, 1), grad, 0.0)
                        fast.backward(grad)
                        window.append((logits, y, t))
                    else:
                        dims = (0, 0, 0, 0, 0, None if t is None else 0, None if t_feats is None else 0)
                        terms, logits = vmap(self._one, in_dims=dims, randomness="error")(
                            self.params, self.buffers, self.knobs, x, y, t, t_feats
                        )
                        torch.where(live, terms.sum(1), 0.0).sum().backward()
                        window.append(terms.detach() * b)
                    if not all_live:  # a frozen student learns nothing, not even from a NaN
                        with torch.no_grad():
                            for p in self.params.values():
                                p.grad[~live] = 0
                    stepper.step(cfg.lr * cosine(step, total_steps))
                    step += 1
                    correct += (logits.detach().max(-1).indices == y).sum(1)  # argmax, in any layout
                    seen += b
                    window_seen += b
                    if len(window) == log_every or i == steps_per_epoch - 1:
                        self._log_window(window, window_seen, epoch, step, total_steps, optimizer, status)
                        bad = [j for j in range(k) if status[j] == "done" and not self._finite[j]]
                        for j in bad:
                            self._freeze(j, last_good, optimizer, live)
                            status[j], done_epochs[j] = "diverged", epoch - 1
                            messages[j] = (
                                f"loss became non-finite in epoch {epoch}; kept the weights of epoch {epoch - 1}"
                            )
                        all_live = all_live and not bad
                        window, window_seen = [], 0
                val_loss, val_acc = self._validate()
                for j in range(k):
                    if status[j] != "done":
                        continue
                    self.emit(
                        j,
                        to_dict(
                            Epoch(
                                stage="student",
                                epoch=epoch,
                                epochs=epochs,
                                step=step,
                                train_acc=float(correct[j]) / seen,
                                val_acc=val_acc[j],
                                val_loss=val_loss[j],
                                seconds=time.perf_counter() - started,
                                method=self._report(j),
                            )
                        ),
                    )
                with torch.no_grad():
                    for name, t in state.items():
                        keep = live.view(-1, *[1] * (t.dim() - 1))
                        last_good[name] = torch.where(keep, t, last_good[name])
        finally:
            if self.tap is not None:
                self.tap.close()
        return self._members(status, done_epochs, messages, last_good)

    def _log_window(self, window, seen, epoch, step, total_steps, optimizer, status) -> None:
        """Each student's loss terms averaged over the window's examples: one host sync. On the
        fast path no step built its terms: they are computed here, from the window's logits."""
        if isinstance(window[0], tuple):
            logits, y, t = (_cat_steps(parts) for parts in zip(*window))
            dims = (0, 0, 0, None if t is None else 0)
            with torch.no_grad():
                mean = vmap(self._terms, in_dims=dims)(self.knobs, logits, y, t).tolist()
        else:
            mean = (torch.stack(window).sum(0) / seen).tolist()  # (K, terms)
        self._finite = [all(math.isfinite(v) for v in row) for row in mean]
        for j, row in enumerate(mean):
            if status[j] != "done" or not self._finite[j]:
                continue
            self.emit(
                j,
                to_dict(
                    Step(
                        stage="student",
                        epoch=epoch,
                        step=step,
                        total_steps=total_steps,
                        loss=sum(row),
                        terms=dict(zip(self.names, row)),
                        lr=optimizer.param_groups[0]["lr"],
                        samples_per_s=None,
                        epochs=self.cfgs[0].epochs,
                    )
                ),
            )

    def _freeze(self, j: int, last_good: dict, optimizer, live: Tensor) -> None:
        """Student j's loss blew up: its weights and statistics go back to its last finished
        epoch's, its optimizer moments to zero, and it learns no more (its loss and gradients
        are left out); it ends with those last good weights (_members)."""
        with torch.no_grad():
            live[j] = False
            for name, t in {**self.params, **self.buffers}.items():
                t[j] = last_good[name][j]
            for p in self.params.values():
                for v in optimizer.state.get(p, {}).values():
                    if isinstance(v, Tensor) and v.shape == p.shape:
                        v[j] = 0

    @torch.no_grad()
    def _validate(self) -> tuple[list, list]:
        if not len(self.y_val):
            return [None] * self.k, [None] * self.k
        logits = self.predict(self.x_val)  # (K, N, C)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), self.y_val.repeat(self.k), reduction="none")
        acc = (logits.max(-1).indices == self.y_val).float().mean(1)
        return loss.view(self.k, -1).mean(1).tolist(), acc.tolist()

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 2048) -> Tensor:
        """Every student's logits (K, N, C) in eval mode."""
        if self.fast is not None:  # a plain MLP: no mode to switch
            return torch.cat([self._fast_logits(x[i : i + batch_size]) for i in range(0, len(x), batch_size)], 1)
        self.pair.eval()
        try:
            out = [
                vmap(self._logits, in_dims=(0, 0, None))(self.params, self.buffers, x[i : i + batch_size])
                for i in range(0, len(x), batch_size)
            ]
            if self.tap is not None:
                self.tap.out.clear()
        finally:
            self.pair.train()
        return torch.cat(out, 1).float()

    def _fast_logits(self, x: Tensor) -> Tensor:
        return self.fast.forward(x.unsqueeze(0).expand(self.k // self.fast.shares, *x.shape), keep=False).float()

    def _report(self, j: int) -> dict | None:
        """The method's end-of-epoch scalars for student j (ctkd's learned T)."""
        method = self.methods[j]
        if not hasattr(method, "report"):
            return None
        own = getattr(method, "module", None)
        if own is not None:
            with torch.no_grad():
                for name, p in own.named_parameters():
                    p.copy_(self.params["own." + name][j])
        return method.report()

    def _members(self, status, epochs, messages, last_good: dict) -> list[Member]:
        """Each student with its own slice of the stacked weights: as trained, or for one that
        diverged or stopped, as its last finished epoch left them."""
        out = []
        with torch.no_grad():
            for j, student in enumerate(self.students):
                for name, t in student.state_dict().items():
                    key = "student." + name
                    src = last_good[key] if status[j] != "done" else {**self.params, **self.buffers}[key]
                    t.copy_(src[j])
                out.append(Member(status[j], epochs[j], messages[j], student))
        return out


def _runs(seeds: list[int]) -> int:
    """M where the seeds come in runs of M equal ones (0,0,1,1,2,2: 2), else 1."""
    for m in range(len(seeds), 1, -1):
        if len(seeds) % m == 0 and all(len(set(seeds[i : i + m])) == 1 for i in range(0, len(seeds), m)):
            return m
    return 1


def _cat_steps(parts: list[Tensor | None]) -> Tensor | None:
    """Steps' (K, B, ...) tensors joined along B, (K, B, C) ones in the layout they came in."""
    if parts[0] is None:
        return None
    if parts[0].dim() == 3 and parts[0].stride(-1) != 1:  # class-major: keep it so
        return torch.cat([p.transpose(1, 2) for p in parts], 2).transpose(1, 2)
    return torch.cat(parts, 1)


def _prefixed(params: dict, buffers: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for d in (params, buffers) for k, v in d.items() if k.startswith(prefix)}
