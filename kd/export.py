"""Taking a trained model away: an ONNX, torch.export (pt2) or safetensors file of a run's teacher,
student alone or distilled student, checked against the PyTorch model before it is offered.

- ONNX through torch.onnx.export(..., dynamo=True), the current exporter, with a dynamic batch
  axis; the run's config and class names in the file's metadata_props.
- pt2: a torch.export program (torch.export.export, saved with torch.export.save), with a dynamic
  batch axis; the config and class names in its extra files. TorchScript is deprecated in
  PyTorch 2.x (torch.jit.load warns so in the PyTorch this runs on), and torch.export is what
  replaces it: a whole-graph program that AOTInductor compiles for C++ and ExecuTorch runs on
  phones. `--format torchscript` says so.
- safetensors: the weights with the config in their metadata (as the run store keeps them).

Parity: the exported file, run in the runtime it will be deployed in (onnxruntime's CPU
provider; the loaded torch.export program; a freshly built model for safetensors), against the
PyTorch model on the run's whole test set: the largest absolute difference of a logit and the
share of test examples whose top-1 class agrees. A file is "ok" only with 100 % agreement and a
difference of at most TOLERANCE (1e-4) times the largest logit's size where that is over 1 (fp32
rounding grows with the values summed, and an untrained deep network's logits run to
thousands). Either way the figures are kept with the run (results "exports"), and the command
line says which.

load(run_id_or_path, model) gives a stored model back as an nn.Module with its config and class
names, for people who use the result in their own code (kd.load).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from kd import data as datasets
from kd import inspect, models
from kd.errors import ConfigError, KDError
from kd.lease import ACTIVE, state
from kd.store import Run, Store

FORMATS = {"onnx": ".onnx", "pt2": ".pt2", "safetensors": ".safetensors"}
MODELS = ("student", "baseline", "teacher")
TOLERANCE = 1e-4  # fp32: the most a logit may differ from PyTorch's, per unit of the largest logit (at least 1)
BATCH = 1024  # test examples run at a time in the parity check


def export(
    run_id: str,
    model: str = "student",
    fmt: str = "onnx",
    out: str | None = None,
    store: Store | None = None,
    int8_too: bool = False,
    timed: bool = True,
) -> dict:
    """Write run `run_id`'s `model` as `fmt` to `out` (default: the run's folder, e.g.
    student.onnx), check it against PyTorch on the test set, time it, keep the figures with the
    run and return them: {"path", "format", "model", "bytes", "max_abs_diff", "agreement", "ok",
    "tolerance", "accuracy", "seconds", "exporter", "latency_ms": {runtime: latency()}, "int8":
    {...} with int8_too (ONNX only: its file, accuracy, agreement with fp32, size, latency)}.
    A KDError names what is wrong (unknown run, a run still training, a model the run did not
    produce, an unwritable path)."""
    store = store or Store()
    run = _finished(store, run_id, model)
    if fmt == "torchscript":
        raise ConfigError("format", "TorchScript is deprecated in PyTorch 2.x; pt2 (torch.export) replaces it")
    if fmt not in FORMATS:
        raise ConfigError("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if int8_too and fmt != "onnx":
        raise ConfigError("int8", "int8 is made from the ONNX file: use --format onnx")
    default = store.run_dir(run_id) / f"{model}{'.export' if fmt == 'safetensors' else ''}{FORMATS[fmt]}"
    path = (Path(out) if out else default).expanduser().absolute()
    _writable(path, fmt, store, run_id)
    net = inspect.load_model(store, run, model)
    bundle = inspect.load_data(run)
    spec = bundle.spec
    meta = {
        "config": json.dumps(run.config, sort_keys=True),
        "class_names": json.dumps(list(spec.class_names)),
        "run_id": run.id,
        "model": model,
        "arch": run.config["teacher" if model == "teacher" else "student"],
        "input_shape": json.dumps(list(spec.input_shape)),  # one example, without the batch axis
        "mean": json.dumps(list(bundle.mean)),  # inputs are (raw - mean) / std, per channel or feature
        "std": json.dumps(list(bundle.std)),
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".export-") as work:  # its own: exports may overlap
        tmp = Path(work) / path.name
        try:
            exporter = _WRITERS[fmt](net.eval(), tuple(spec.input_shape), tmp, meta)
            run_file = _RUNNERS[fmt](tmp)  # loaded once: checked, scored and timed
            diff, agree, scale, acc = _compare(net, run_file, bundle.x_test, bundle.y_test)
        except KDError:
            raise
        except Exception as e:  # an exporter that cannot take this model, a full disk, a missing package
            raise KDError(f"{fmt}: cannot export {meta['arch']} ({type(e).__name__}: {_first_line(e)})") from None
        ok = passes(diff, agree, scale)
        result = {
            "format": fmt,
            "model": model,
            "max_abs_diff": diff,
            "agreement": agree,
            "ok": ok,
            "tolerance": TOLERANCE * max(1.0, scale),
            "largest_logit": scale,
            "test_examples": len(bundle.y_test),
            "accuracy": acc,
            "exporter": exporter,
        }
        example = bundle.x_test[:1]
        if timed:  # the file in its runtime, beside PyTorch eager: one protocol (latency())
            result["latency_ms"] = {"pytorch": latency(lambda n: _torch_threads(net, n), example)}
            if fmt == "onnx":
                result["latency_ms"]["onnxruntime"] = latency(lambda n: _onnx_session(tmp, n), example)
            elif fmt == "pt2":
                result["latency_ms"]["pytorch (torch.export)"] = latency(lambda n: _torch_threads(run_file, n), example)
        q_tmp = Path(work) / f"{path.stem}.int8.onnx"
        if int8_too and ok:
            try:
                result["int8"] = _int8_figures(tmp, q_tmp, net, bundle, example if timed else None)
            except Exception as e:  # int8 is extra: the fp32 file stands without it
                result["int8"] = {"error": f"{type(e).__name__}: {_first_line(e)}"}
        # a file that fails its check never takes a good file's place: it is kept beside, marked
        final = path if ok else path.with_name(f"{path.stem}.failed{path.suffix}")
        try:
            os.replace(tmp, final)
            if "path" in result.get("int8", {}):
                q = final.with_name(f"{final.stem}.int8.onnx")
                os.replace(q_tmp, q)
                result["int8"]["path"] = str(q)
        except OSError as e:
            raise ConfigError("out", f"cannot write {final} ({e.strerror or e})") from None
    result.update(path=str(final), bytes=final.stat().st_size, seconds=round(time.perf_counter() - t0, 3))
    _keep(store, run_id, model, fmt, result)
    return result


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def _int8_figures(fp32: Path, q: Path, net: nn.Module, bundle, example: torch.Tensor | None) -> dict:
    how = int8(fp32, q, net, bundle.x_train)
    _, agree, _, acc = _compare(net, _onnx_session(q, 0), bundle.x_test, bundle.y_test)
    out = {
        "path": str(q),
        "bytes": q.stat().st_size,
        "accuracy": acc,
        "agreement": agree,  # with the fp32 model's top-1
        "quantiser": how,
    }
    if example is not None:
        out["latency_ms"] = {"onnxruntime": latency(lambda n: _onnx_session(q, n), example)}
    return out


def write_checked(
    net: nn.Module, input_shape: tuple, fmt: str, path: Path, meta: dict, x: torch.Tensor
) -> tuple[str, float, float, float]:
    """Write `net` as `fmt` to `path` with `meta`, load it back in its runtime and compare it
    with `net` on the rows of x: (the exporter used, the largest logit difference, top-1
    agreement, the largest logit's size)."""
    exporter = _WRITERS[fmt](net.eval(), tuple(input_shape), path, meta)
    return (exporter, *parity(net, _RUNNERS[fmt](path), x))


def _finished(store: Store, run_id: str, model: str) -> Run:
    run = store.get(run_id)
    if run is None:
        raise KDError(f"no such run: {run_id!r} (python -m kd runs lists them)")
    if state(run) in ACTIVE:
        raise KDError(f"run {run_id} is still {state(run)}: export it once it has finished")
    if model not in MODELS:
        raise ConfigError("model", f"must be one of {', '.join(MODELS)}, got {model!r}")
    if not store.weights_path(run_id, model).is_file():
        made = [m for m in MODELS if store.weights_path(run_id, m).is_file()]
        raise ConfigError("model", f"run {run_id} has no {model} (it has {', '.join(made) or 'no trained model'})")
    return run


PROTECTED = ("teacher.safetensors", "baseline.safetensors", "student.safetensors", "checkpoint.safetensors")


def _writable(path: Path, fmt: str, store: Store, run_id: str) -> None:
    """Refuse a path that is not a file of this format, that would land on a run's own files
    (its weights, its checkpoint, another run's folder), or whose folder cannot be written."""
    if path.is_dir():
        raise ConfigError("out", f"{path} is a folder; name the file to write")
    if path.suffix != FORMATS[fmt]:
        raise ConfigError("out", f"{path.name}: a {fmt} file ends in {FORMATS[fmt]}")
    root, own = store.root.absolute(), store.run_dir(run_id).absolute()
    inside = root in path.parents
    if inside and (path.parent != own or path.name in PROTECTED or path.name == "config.json"):
        raise ConfigError("out", f"{path} is one of the run store's own files; write the export elsewhere")
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError("out", f"no such folder: {folder}")
    if not os.access(folder, os.W_OK):
        raise ConfigError("out", f"cannot write in {folder} (permission denied)")


def _keep(store: Store, run_id: str, model: str, fmt: str, result: dict) -> None:
    def decide(run: Run) -> dict:
        results = dict(run.results or {})
        exports = dict(results.get("exports") or {})
        exports[model] = {**(exports.get(model) or {}), fmt: result}
        results["exports"] = exports
        return {"results": json.dumps(results, allow_nan=True)}

    store.change(run_id, decide)


# -- writing each format --------------------------------------------------------------------------
def _onnx(net: nn.Module, shape: tuple, path: Path, meta: dict) -> str:
    import onnx

    example = torch.zeros(2, *shape)
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(
        net,
        (example,),
        str(path),
        dynamo=True,
        input_names=["x"],
        output_names=["logits"],
        dynamic_shapes=({0: batch},),
        external_data=False,  # one file: the weights inside it
        verbose=False,
    )
    proto = onnx.load(str(path))
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=str(value))
    onnx.save(proto, str(path))
    return f"torch.onnx.export(dynamo=True), opset {proto.opset_import[0].version}"


def _pt2(net: nn.Module, shape: tuple, path: Path, meta: dict) -> str:
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(net, (torch.zeros(2, *shape),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path), extra_files=_extra(meta))
    return "torch.export.export"


def _extra(meta: dict) -> dict[str, str]:
    return {f"{k}.json" if k in ("config", "class_names") else k: str(v) for k, v in meta.items()}


def _safetensors(net: nn.Module, shape: tuple, path: Path, meta: dict) -> str:
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()},
        str(path),
        metadata={k: str(v) for k, v in meta.items()},
    )
    return "safetensors"


_WRITERS = {"onnx": _onnx, "pt2": _pt2, "safetensors": _safetensors}


# -- int8 -----------------------------------------------------------------------------------------
CALIBRATION = 256  # training examples that set a static quantisation's activation ranges


def int8(fp32: Path, out: Path, net: nn.Module, x_train: torch.Tensor) -> str:
    """An int8 copy of an fp32 ONNX file through onnxruntime's quantisation: dynamic (weights int8,
    activations quantised on the fly) for a model without convolutions, static (QDQ, activation
    ranges from CALIBRATION training examples drawn at random with a fixed seed) for one with
    them. Returns how."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    convolutional = any(isinstance(m, nn.Conv1d | nn.Conv2d) for m in net.modules())
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre))
        if not convolutional:
            quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8)
            return "onnxruntime quantize_dynamic (int8 weights, activations quantised per batch)"
        rows = x_train[:CALIBRATION].numpy()

        class Examples(CalibrationDataReader):
            def __init__(self) -> None:
                self.batches = iter([{"x": rows[i : i + 32]} for i in range(0, len(rows), 32)])

            def get_next(self):
                return next(self.batches, None)

        quantize_static(
            str(pre),
            str(out),
            Examples(),
            quant_format=QuantFormat.QDQ,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
        )
        return f"onnxruntime quantize_static (QDQ, int8 weights, uint8 activations, {len(rows)} calibration examples)"


# -- latency, one protocol for every runtime ---------------------------------------------------------
LATENCY_BUDGET_S = 0.3  # timed per (runtime, batch, threads), after 3 warm-up calls
LATENCY_ROUNDS = (10, 200)  # at least, at most


def latency(make_run, example: torch.Tensor) -> dict:
    """p50 and p95 wall time in ms of one call on batches of 1 and 256 copies of `example`, with
    one thread and with every core: {"1 thread": {"batch 1": {"p50", "p95"}, "batch 256": ...},
    "all threads": ...}. `make_run(threads)` gives the callable to time (threads 0: all)."""
    out = {}
    for label, threads in (("1 thread", 1), ("all threads", 0)):
        run = make_run(threads)
        out[label] = {}
        for batch in (1, 256):
            x = example.expand(batch, *example.shape[1:]).contiguous()
            for _ in range(3):
                run(x)
            times, start = [], time.perf_counter()
            while len(times) < LATENCY_ROUNDS[1] and (
                len(times) < LATENCY_ROUNDS[0] or time.perf_counter() - start < LATENCY_BUDGET_S
            ):
                t0 = time.perf_counter()
                run(x)
                times.append((time.perf_counter() - t0) * 1e3)
            p50, p95 = (float(v) for v in torch.tensor(times).quantile(torch.tensor([0.5, 0.95])))
            out[label][f"batch {batch}"] = {"p50": round(p50, 4), "p95": round(p95, 4)}
    return out


def _onnx_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: onnxruntime's default, one per core
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def _torch_threads(run, threads: int):
    """`run` called with torch using `threads` threads (0: every core), then torch as it was."""

    @torch.no_grad()
    def timed(x):
        before = torch.get_num_threads()
        torch.set_num_threads(threads or os.cpu_count() or 1)
        try:
            return run(x)
        finally:
            torch.set_num_threads(before)

    return timed


# -- running each format, for the parity check -----------------------------------------------------
def _run_onnx(path: Path):
    return _onnx_session(path, 0)


def _run_pt2(path: Path):
    program = torch.export.load(str(path)).module()
    return lambda x: program(x)


def _run_safetensors(path: Path):
    fresh = load(str(path))
    return lambda x: fresh(x)


_RUNNERS = {"onnx": _run_onnx, "pt2": _run_pt2, "safetensors": _run_safetensors}


def parity(net: nn.Module, run_file, x: torch.Tensor) -> tuple[float, float, float]:
    """The largest absolute logit difference, the top-1 agreement of `run_file` (a callable from
    a batch to logits) against the PyTorch model `net` over every row of x, and the largest
    logit's size (what the difference is measured against)."""
    return _compare(net, run_file, x)[:3]


@torch.no_grad()
def _compare(net: nn.Module, run_file, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[float, ...]:
    """parity(), and with labels y the file's top-1 accuracy, from the same pass over x."""
    net.eval()
    worst, same, scale, right = 0.0, 0, 0.0, 0
    for i in range(0, len(x), BATCH):
        batch = x[i : i + BATCH].contiguous()
        ref, got = net(batch), run_file(batch)
        gap = (ref - got).abs()
        worst = max(worst, float(gap.max()) if torch.isfinite(gap).all() else float("inf"))  # NaN fails
        scale = max(scale, float(ref.abs().max()))
        same += int((ref.argmax(1) == got.argmax(1)).sum())
        if y is not None:
            right += int((got.argmax(1) == y[i : i + BATCH]).sum())
    n = max(1, len(x))
    return worst, same / n, scale, right / n


def passes(diff: float, agreement: float, scale: float) -> bool:
    """Whether a file computes what PyTorch does: every top-1 class, and every logit to within
    TOLERANCE of the largest logit's size (at least 1)."""
    return agreement == 1.0 and diff <= TOLERANCE * max(1.0, scale)


# -- loading a model back --------------------------------------------------------------------------
def load(run_or_path: str, model: str = "student", store: Store | None = None) -> nn.Module:
    """A stored model as an nn.Module in eval mode on the CPU, with `.config` (its run's config,
    a dict) and `.class_names`: from a run id (its `model`), or from a .safetensors file this
    project wrote (a run's weights, or an export)."""
    path = Path(run_or_path)
    if path.suffix == ".safetensors" or path.is_file():
        if not path.is_file():
            raise KDError(f"no such file: {path}")
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if "config" not in meta:
            raise KDError(f"{path}: not a model written by Distill Lab (no config in its metadata)")
        config = json.loads(meta["config"])
        arch = meta.get("arch") or config["teacher" if meta.get("model") == "teacher" else "student"]
        spec = datasets.spec_for(config)
        net = models.build(arch, spec.input_shape, spec.num_classes)
        net.load_state_dict(load_file(str(path), device="cpu"))
        names = json.loads(meta["class_names"]) if "class_names" in meta else list(spec.class_names)
    else:
        store = store or Store()
        run = _finished(store, str(run_or_path), model)
        net = inspect.load_model(store, run, model)
        config, names = run.config, list(datasets.spec_for(run.config).class_names)
    net.config, net.class_names = config, names
    return net.eval()


def file_metadata(path: str) -> dict:
    """The config and class names an exported file carries (ONNX metadata_props, a pt2 program's
    extra files, safetensors metadata)."""
    p = Path(path)
    if p.suffix == ".onnx":
        import onnx

        return {prop.key: prop.value for prop in onnx.load(str(p), load_external_data=False).metadata_props}
    if p.suffix == ".pt2":
        extra = {"config.json": "", "class_names.json": "", "run_id": "", "model": "", "arch": ""}
        torch.export.load(str(p), extra_files=extra)
        return {k.removesuffix(".json"): v for k, v in extra.items()}
    from safetensors import safe_open

    with safe_open(str(p), "pt") as f:
        return dict(f.metadata() or {})
