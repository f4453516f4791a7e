"""Teacher checkpoints: a file's values and dtypes are checked before its teacher is used, a dtype
conversion is stated, and a refused file leaves no run behind on the command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from kd import data, models
from kd.config import RunConfig
from kd.errors import ConfigError
from kd.store import Store
from kd.trainer import Trainer, load_teacher_weights

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(dataset="digits", epochs=2, teacher_epochs=2, batch_size=128, device="cpu")
SPEC = data.spec("digits", None, 32)  # inputs (1, 8, 8), 10 classes


def teacher_file(tmp_path, change=lambda state: None, arch="mlp-512-256") -> str:
    """A freshly initialised `arch` for digits, changed in place by `change`, saved as safetensors."""
    torch.manual_seed(0)
    state = {k: v.clone() for k, v in models.build(arch, SPEC.input_shape, SPEC.num_classes).state_dict().items()}
    change(state)
    path = tmp_path / f"{arch}.safetensors"
    save_file(state, str(path))
    return str(path)


def load(path: str, arch: str = "mlp-512-256"):
    return load_teacher_weights(models.build(arch, SPEC.input_shape, SPEC.num_classes), path, arch)


def kd(*args):
    return subprocess.run(
        [sys.executable, "-m", "kd", *args], cwd=ROOT, env=dict(os.environ), timeout=300, capture_output=True, text=True
    )


def test_non_finite_values_are_refused_naming_the_tensor(tmp_path):
    def poison(state):
        state["3.weight"].view(-1)[:1024] = float("nan")
        state["5.bias"][0] = float("inf")

    with pytest.raises(
        ConfigError,
        match=r"^teacher_checkpoint: .*tensor '3\.weight' has 1,024 non-finite "
        r"values \(NaN/inf\); refused$",
    ):
        load(teacher_file(tmp_path, poison))
    with pytest.raises(ConfigError, match=r"tensor '5\.bias' has 1 non-finite value \(NaN/inf\)"):
        load(teacher_file(tmp_path, lambda s: s["5.bias"].__setitem__(0, float("-inf"))))


def test_values_out_of_range_are_refused_naming_the_tensor(tmp_path):
    path = teacher_file(tmp_path, lambda s: s["1.bias"].__setitem__(7, -3e9))
    with pytest.raises(ConfigError, match=r"tensor '1\.bias' has 1 value with \|x\| > 1e\+06 \(up to 3e\+09\)"):
        load(path)
    assert load(teacher_file(tmp_path, lambda s: s["1.bias"].__setitem__(7, -9e5))) == ""  # large, still sane


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_are_converted_and_the_conversion_is_said(tmp_path, dtype):
    path = teacher_file(tmp_path, lambda s: s.update({k: v.to(dtype) for k, v in s.items()}))
    assert load(path) == f"converted {str(dtype).removeprefix('torch.')} -> float32"


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int32, torch.bool])
def test_integer_or_bool_tensors_for_float_weights_are_refused_naming_the_dtype(tmp_path, dtype):
    path = teacher_file(tmp_path, lambda s: s.update({"5.weight": s["5.weight"].to(dtype)}))
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(ConfigError, match=rf"tensor '5\.weight' is {name}; the teacher's is float32"):
        load(path)


def test_integer_buffers_that_are_integers_in_the_model_load(tmp_path):
    path = teacher_file(
        tmp_path, lambda s: s.update({k: v.half() for k, v in s.items() if v.is_floating_point()}), arch="cnn-x0.25"
    )  # BatchNorm's num_batches_tracked stays int64
    assert load(path, "cnn-x0.25") == "converted float16 -> float32"
    with pytest.raises(ConfigError, match=r"tensor '1\.num_batches_tracked' is float32; the teacher's is int64"):
        load(
            teacher_file(tmp_path, lambda s: s.update({"1.num_batches_tracked": torch.tensor(3.0)}), arch="cnn-x0.25"),
            "cnn-x0.25",
        )


def test_a_float16_teacher_trains_students_and_the_loaded_stage_says_it_was_converted(tmp_path):
    path = teacher_file(tmp_path, lambda s: s.update({k: v.half() for k, v in s.items()}))
    events = []
    result = Trainer(RunConfig(**TINY, teacher_checkpoint=path), emit=events.append).run()
    assert result.status == "done" and result.stages["teacher"].status == "loaded"
    assert result.stages["teacher"].message == f"loaded from {path} (converted float16 -> float32)"
    loaded = [e for e in events if e["kind"] == "stage" and e["stage"] == "teacher"]
    assert loaded[-1]["message"] == result.stages["teacher"].message
    assert all(p.dtype == torch.float32 for p in result.models["teacher"].parameters())


def test_the_trainer_refuses_a_nan_teacher_instead_of_diverging(tmp_path):
    path = teacher_file(tmp_path, lambda s: s["1.weight"].fill_(float("nan")))
    with pytest.raises(ConfigError, match=r"tensor '1\.weight' has 32,768 non-finite values"):
        Trainer(RunConfig(**TINY, teacher_checkpoint=path)).run()


@pytest.mark.parametrize("dry_run", [["--dry-run"], []])
def test_the_cli_refuses_a_bad_checkpoint_before_a_run_exists(tmp_path, runs_dir, dry_run):
    path = teacher_file(tmp_path, lambda s: s["3.weight"].view(-1)[:1024].fill_(float("nan")))
    out = kd("train", "--epochs", "1", "--device", "cpu", "--teacher-checkpoint", path, *dry_run)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith("error: --teacher-checkpoint: ") and "tensor '3.weight' has 1,024 non-finite" in lines[0]
    assert Store().runs() == [] and json.loads(kd("runs", "--json").stdout) == []


def test_the_cli_dry_run_loads_a_good_checkpoint_and_refuses_one_of_another_teacher(tmp_path):
    path = teacher_file(tmp_path)
    out = kd("train", "--teacher-checkpoint", path, "--dry-run")
    assert out.returncode == 0 and json.loads(out.stdout)["teacher_checkpoint"] == path, out.stderr
    out = kd("train", "--teacher", "hinton-1200", "--teacher-checkpoint", path, "--dry-run")
    assert out.returncode == 2 and "does not fit teacher 'hinton-1200'" in out.stderr, out.stderr
