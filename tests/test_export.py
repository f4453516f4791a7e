"""Taking a model away: every architecture exports to ONNX and pt2 (torch.export) and computes
what PyTorch computes; a real run's student exported from the command line in every format,
checked on the whole test set, with its config and class names in the file; kd.load gives it
back; bad input is one line and exit code 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import kd
from kd import export, models, runner
from kd.config import RunConfig
from kd.store import Store

ROOT = Path(__file__).resolve().parents[1]
TINY = RunConfig(epochs=2, teacher_epochs=2, batch_size=128, device="cpu")


def shape_for(arch: str) -> tuple:
    """A data shape the architecture takes: signals for 1-D CNNs, MNIST for LeNet, else CIFAR."""
    if arch.startswith("cnn1d"):
        return (2, 64)
    return (1, 28, 28) if arch.startswith("lenet") else (3, 32, 32)


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
@pytest.mark.parametrize("arch", models.MODELS.keys())
def test_every_architecture_exports_and_computes_what_pytorch_computes(arch, fmt, tmp_path):
    torch.manual_seed(0)
    shape = shape_for(arch)
    net = models.build(arch, shape, 10).eval()
    x = torch.randn(33, *shape)  # an odd batch: the batch axis is dynamic
    meta = {"config": "{}", "class_names": json.dumps([str(i) for i in range(10)])}
    _, diff, agree, scale = export.write_checked(net, shape, fmt, tmp_path / f"m{export.FORMATS[fmt]}", meta, x)
    assert export.passes(diff, agree, scale), (diff, agree, scale)


def kd_cli(*args: str):
    return subprocess.run([sys.executable, "-m", "kd", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_runs_student_exported_in_every_format_checked_kept_and_loaded_back(runs_dir, tmp_path):
    store = Store()
    run_id, _ = runner.train_new(store, TINY)
    done = {}
    for fmt in export.FORMATS:
        out = kd_cli("export", run_id, "--format", fmt, "--json", *(["--int8"] if fmt == "onnx" else []))
        assert out.returncode == 0, out.stderr
        done[fmt] = json.loads(out.stdout)
        assert done[fmt]["ok"] and done[fmt]["agreement"] == 1.0 and done[fmt]["test_examples"] == 360
        assert done[fmt]["accuracy"] == pytest.approx(store.get(run_id).models["student"]["accuracy"], abs=1e-6)
        meta = export.file_metadata(done[fmt]["path"])
        assert json.loads(meta["config"])["student"] == "mlp-128" and json.loads(meta["class_names"])[9] == "9"
    lat = done["onnx"]["latency_ms"]  # the file in its runtime beside PyTorch, one protocol
    assert set(lat) == {"pytorch", "onnxruntime"} and set(lat["onnxruntime"]) == {"1 thread", "all threads"}
    assert 0 < lat["onnxruntime"]["1 thread"]["batch 256"]["p50"] <= lat["onnxruntime"]["1 thread"]["batch 256"]["p95"]
    q = done["onnx"]["int8"]  # an MLP: dynamic quantisation
    assert "quantize_dynamic" in q["quantiser"] and q["bytes"] < done["onnx"]["bytes"]
    assert q["accuracy"] >= done["onnx"]["accuracy"] - 0.05 and q["agreement"] > 0.9
    assert set(store.get(run_id).results["exports"]["student"]) == set(export.FORMATS)  # kept with the run

    net = kd.load(run_id)  # the distilled student, for one's own code
    assert net.config["student"] == "mlp-128" and net.class_names[0] == "0" and not net.training
    again = kd.load(done["safetensors"]["path"])  # or from the exported file
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(net(x), again(x))
    teacher = kd_cli("export", run_id, "--model", "teacher", "--out", str(tmp_path / "t.onnx"))
    assert teacher.returncode == 0 and "parity ok" in teacher.stdout and (tmp_path / "t.onnx").is_file()


def test_a_conv_students_int8_copy_is_quantised_statically_from_training_examples(runs_dir):
    run_id, _ = runner.train_new(Store(), TINY.replace(teacher="cnn-x0.5", student="cnn-x0.25", epochs=3))
    result = export.export(run_id, "student", "onnx", int8_too=True, timed=False)
    q = result["int8"]
    assert result["ok"] and "quantize_static" in q["quantiser"] and "256 calibration examples" in q["quantiser"]
    assert q["accuracy"] >= result["accuracy"] - 0.1 and q["agreement"] > 0.8  # int8 costs little here
    assert "latency_ms" not in result


def test_bad_exports_are_one_line_and_exit_2(runs_dir, tmp_path):
    store = Store()
    queued = store.create_run(TINY.to_dict(), status="queued")  # just started: its worker is on its way
    cases = [
        (["nope"], "no such run: 'nope'"),
        ([queued], f"run {queued} is still queued"),
        ([queued, "--format", "torchscript"], f"run {queued} is still queued"),
    ]
    run_id, _ = runner.train_new(store, TINY)
    os.unlink(store.weights_path(run_id, "baseline"))
    cases += [
        ([run_id, "--model", "baseline"], "has no baseline (it has student, teacher)"),
        ([run_id, "--model", "assistant"], "model: must be one of student, baseline, teacher"),
        ([run_id, "--format", "torchscript"], "TorchScript is deprecated in PyTorch 2.x; pt2 (torch.export)"),
        ([run_id, "--format", "pt2", "--int8"], "int8 is made from the ONNX file: use --format onnx"),
        ([run_id, "--out", str(tmp_path / "no" / "such" / "x.onnx")], "no such folder"),
        ([run_id, "--out", str(tmp_path)], "is a folder; name the file to write"),
        ([run_id, "--out", str(tmp_path / "x.safetensors")], "--out: x.safetensors: a onnx file ends in .onnx"),
        (
            [run_id, "--format", "safetensors", "--out", str(store.weights_path(run_id, "student"))],
            "is one of the run store's own files",
        ),
    ]
    for args, words in cases:
        out = kd_cli("export", *args)
        assert out.returncode == 2 and words in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not list(tmp_path.rglob("*.onnx")) and not list(store.run_dir(run_id).glob("*.partial*"))  # none half-done


def test_a_file_that_fails_its_check_never_replaces_a_good_one_and_nan_fails(runs_dir, monkeypatch):
    store = Store()
    run_id, _ = runner.train_new(store, TINY)
    good = export.export(run_id, "student", "onnx", timed=False)
    assert good["ok"] and json.loads(export.file_metadata(good["path"])["mean"])  # the inputs' normalisation
    before = Path(good["path"]).read_bytes()
    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # nothing passes now
    bad = export.export(run_id, "student", "onnx", timed=False)
    assert not bad["ok"] and bad["path"].endswith("student.failed.onnx")
    assert Path(good["path"]).read_bytes() == before  # the good file stays where it was
    net = models.build("mlp-128", (1, 8, 8), 10).eval()
    x = torch.randn(4, 1, 8, 8)
    diff, agree, scale = export.parity(net, lambda b: torch.full((len(b), 10), float("nan")), x)
    assert not export.passes(diff, agree, scale)
