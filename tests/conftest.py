from pathlib import Path

import pytest

# Real MNIST (24,680 train / 10,000 test) in torchvision's layout, beside the repository.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def runs_dir(tmp_path, monkeypatch):
    """Every test gets its own run store; nothing is written into the repository."""
    path = tmp_path / "runs"
    monkeypatch.setenv("KD_RUNS_DIR", str(path))
    monkeypatch.setenv("KD_WARM_WORKER", "0")  # no standby worker (kd.jobs.Standby) unless a test asks
    return path


@pytest.fixture
def mnist_dir():
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"shared MNIST not found at {SHARED_DATA}")
    return str(SHARED_DATA)
