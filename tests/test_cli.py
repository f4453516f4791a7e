"""The command line, as a script would use it: real subprocesses, real runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL_KEYS = {"accuracy", "params", "size_mb", "flops", "latency_ms", "agreement", "ece", "train_seconds", "epochs"}


def kd(*args, env_extra=None, timeout=300):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "kd", *args], cwd=ROOT, env=env, timeout=timeout, capture_output=True, text=True
    )


def test_tiny_run_with_json_then_runs_and_show():
    out = kd(
        "train",
        "--epochs",
        "1",
        "--teacher-epochs",
        "1",
        "--batch-size",
        "128",
        "--seed",
        "1",
        "--device",
        "cpu",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)  # exactly one JSON object on stdout
    assert set(result) >= {"run_id", "status", "config", "models"} and result["status"] == "done"
    assert result["config"]["epochs"] == 1 and result["config"]["seed"] == 1
    assert set(result["models"]) == {"teacher", "baseline", "student"}
    for name, m in result["models"].items():
        assert MODEL_KEYS <= set(m), name
        assert 0 < m["accuracy"] <= 1 and m["params"] > 0 and m["epochs"] == 1
    assert result["models"]["teacher"]["params"] > result["models"]["student"]["params"]

    runs = json.loads(kd("runs", "--json").stdout)
    assert [r["run_id"] for r in runs] == [result["run_id"]]
    shown = json.loads(kd("show", result["run_id"], "--json").stdout)
    assert shown["models"]["student"]["accuracy"] == result["models"]["student"]["accuracy"]
    text = kd("show", result["run_id"])
    assert "distilled student" in text.stdout and "student alone" in text.stdout


def test_progress_and_table_without_json():
    out = kd("train", "--epochs", "1", "--teacher-epochs", "1", "--device", "cpu", "--student-fraction", "0.1")
    assert out.returncode == 0, out.stderr
    assert "epoch   1/1" in out.stderr and "samples/s" in out.stderr  # progress while it trains
    stages = {line.split(":")[0]: line for line in out.stderr.splitlines() if "parameters" in line}
    assert "training examples" not in stages["teacher"]  # the teacher learns from all of them
    for student in ("student alone", "distilled student"):
        assert stages[student].endswith("on 130 of the 1,293 training examples"), stages[student]
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["model", "test", "acc"]
    assert any(x.startswith("teacher") for x in lines) and any(x.startswith("distilled student") for x in lines)
    assert "keeps" in out.stdout and "of the teacher's accuracy" in out.stdout and "noise of ±" in out.stdout


@pytest.mark.parametrize(
    "what,expect",
    [
        ("models", "resnet32x4"),
        ("datasets", "folder:PATH"),
        ("methods", "kd"),
        ("methods", "[--temperature 4.0, --alpha 0.9, --standardize (off)]"),
    ],
)
def test_list(what, expect):
    out = kd("list", what)
    assert out.returncode == 0 and expect in out.stdout


BAD = [
    (["--dataset", "imagenet"], "--dataset: 'imagenet' is not one of: digits"),
    (["--teacher", "vgg"], "--teacher: 'vgg' is not one of"),
    (["--student", "lenet5"], "--student: lenet5 needs images of at least"),
    (["--method", "magic"], "--method: 'magic' is not one of: "),
    (["--temperature", "0"], "--temperature: must be >= 0.05 and <= 1000, got 0"),
    (["--temperature", "-2"], "--temperature: must be >= 0.05"),
    (["--temperature", "1e-320"], "--temperature: must be >= 0.05 and <= 1000, got 1e-320"),
    (["--temperature", "hot"], "--temperature: must be a number"),
    (["--alpha", "1.2"], "--alpha: must be >= 0 and <= 1"),
    (["--epochs", "0"], "--epochs: must be between 1"),
    (["--epochs", "1.5"], "--epochs: must be a whole number"),
    (["--batch-size", "0"], "--batch-size: must be between 1"),
    (["--device", "tpu"], "--device: 'tpu' is not one of"),
    (["--dataset", "folder:/no/such/folder"], "/no/such/folder"),
    (["--dataset", "mnist", "--data-dir", "/no/such/dir"], "/no/such/dir"),
    (["--dataset", "moons", "--teacher", "resnet20"], "--teacher: resnet20 needs images"),
    (["--bogus", "1"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_is_one_line_and_exit_code_2(args, message, runs_dir):
    out = kd("train", *args, env_extra={"KD_OFFLINE": "1"})
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr
    assert not runs_dir.exists() or "running" not in kd("runs").stdout  # no half-made run left behind


def test_show_unknown_run():
    out = kd("show", "20990101-000000-abcdef")
    assert out.returncode == 2 and "no such run" in out.stderr


def test_train_argv_gives_back_the_config_it_was_made_from(capsys):
    from kd import cli
    from kd.config import RunConfig

    cfg = RunConfig(
        method="dkd",
        teacher="cnn-x0.5",
        student="cnn-x0.25",
        epochs=3,
        seed=7,
        standardize=True,
        batch_size=32,
        options={"dkd_beta": 2.5, "dkd_warmup": 3},
    )
    assert cli.main([*cli.train_argv(cfg), "--dry-run"]) == 0
    assert RunConfig.from_json(capsys.readouterr().out) == cfg
    assert cli.train_argv(RunConfig()) == ["train"]
