"""A person's own data: tables (CSV, Parquet), NumPy archives of signals, image folders split
into train/ val/ test/, and zips wrapping them. Files made here; each loads with the right
shapes and splits, trains end to end from the CLI, and each bad input gets one clear message
naming the file, exit code 2 and nothing in the store."""

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from kd import data, models, plots, service, uploads
from kd.errors import DataError, FitError, KDError

ROOT = Path(__file__).resolve().parents[1]


def kd(*args: str, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "kd", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(autouse=True)
def fresh_cache():
    data.load.cache_clear()
    yield
    data.load.cache_clear()


def table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Two numbers, a text column and a text label that depends on all three."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(5, 2, n), rng.normal(-3, 0.5, n)
    colour = rng.choice(["red", "green", "blue"], n)
    y = np.where((a - 5) + 2 * (b + 3) + (colour == "red") * 1.5 > 0.3, "yes", "no")
    return pd.DataFrame({"a": a, "b": b, "colour": colour, "outcome": y})


def signals(path: Path, n: int = 400, length: int = 64, test: int = 100) -> Path:
    """(N, 2, L) two-channel sines of 3 frequencies in noise, with an x_test of their own."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, n + test)
    t = np.arange(length)
    phase = rng.uniform(0, 6, (n + test, 2, 1))
    x = np.sin(2 * np.pi * (y[:, None, None] + 1) * t / 32 + phase) + rng.normal(0, 0.5, (n + test, 2, length))
    np.savez(path, x=x[:n].astype(np.float32), y=y[:n], x_test=x[n:].astype(np.float32), y_test=y[n:])
    return path


def png(colour: str, size: int = 10) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "PNG")
    return buf.getvalue()


# -- tables ---------------------------------------------------------------------------------------
def test_a_csv_with_text_and_a_missing_value_is_refused_then_filled_encoded_and_standardised(tmp_path):
    df = table()
    df.loc[7, "a"] = np.nan
    path = tmp_path / "patients.csv"
    df.to_csv(path, index=False)
    refused = r"patients.csv: column 'a' is missing in 1 row\(s\).*Missing values.*--fill-missing"
    with pytest.raises(DataError, match=refused):
        data.spec(f"table:{path}")
    spec = data.spec(f"table:{path}", fill_missing="mean")
    assert spec.input_shape == (5,)  # a, b and colour one-hot over its 3 values
    assert spec.class_names == ("no", "yes")
    notes = " ".join(spec.notes)
    assert "label column 'outcome' (the last" in notes and "colour (3 values)" in notes and "a (1)" in notes
    bundle = data.load(f"table:{path}", fill_missing="mean", val_fraction=0.1)
    assert len(bundle.y_test) == 60 and len(bundle.y_train) + len(bundle.y_val) == 240  # 20 % test, stratified
    # standardised with the training rows' statistics: mean 0 and std 1 there, not on test
    assert torch.allclose(bundle.x_train[:, :2].mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(bundle.x_train[:, :2].std(0, correction=0), torch.ones(2), atol=1e-4)
    assert bundle.mean[0] == pytest.approx(df["a"].mean(), abs=0.5) and bundle.mean[1] == pytest.approx(-3, abs=0.2)
    out = kd("train", "--dataset", f"table:{path}", "--fill-missing", "mean", "--epochs", "2", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["config"]["fill_missing"] == "mean"


def test_a_parquet_table_takes_its_label_column_by_name_and_trains_from_the_cli(tmp_path, runs_dir):
    path = tmp_path / "measurements.parquet"
    table().to_parquet(path)
    spec = data.spec(f"table:{path}", label="colour")
    assert spec.class_names == ("blue", "green", "red") and spec.input_shape == (4,)  # a, b, outcome one-hot
    out = kd("train", "--dataset", f"table:{path}", "--label", "outcome", "--epochs", "30", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    said = plots.run_notes(e for _, e in service.events(result["run_id"]))  # the Live page's notes
    assert said[0].startswith("label column 'outcome'; 2 numeric column(s)")
    assert result["config"]["label"] == "outcome"
    assert result["models"]["teacher"]["accuracy"] > 0.8  # the label is learnable from the columns
    assert service.names([service.get_run(result["run_id"])])[result["run_id"]].startswith("measurements.parquet")


# -- npz -----------------------------------------------------------------------------------------
def test_an_npz_of_signals_uses_its_test_split_offers_1d_models_and_trains_from_the_cli(tmp_path, runs_dir):
    path = signals(tmp_path / "vibration.npz")
    spec = data.spec(f"npz:{path}")
    assert spec.input_shape == (2, 64) and spec.num_classes == 3 and spec.class_names == ("0", "1", "2")
    assert any("x_test (100)" in n for n in spec.notes)
    bundle = data.load(f"npz:{path}", val_fraction=0.1)
    assert len(bundle.y_test) == 100 and len(bundle.y_train) == 360 and len(bundle.y_val) == 40
    models.check_fit("cnn1d-x1", spec.input_shape, 3)
    models.check_fit("mlp-128", spec.input_shape, 3)  # MLPs take any shape
    with pytest.raises(FitError, match="lenet5 needs images .* 1-D signals of 2 channel"):
        models.check_fit("lenet5", spec.input_shape, 3)
    out = kd(
        "train", "--dataset", f"npz:{path}", "--teacher", "cnn1d-x1", "--student", "cnn1d-x0.25", "--epochs", "8",
        "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    models_ = json.loads(out.stdout)["models"]
    assert models_["teacher"]["accuracy"] > 0.6 and models_["student"]["flops"] < models_["teacher"]["flops"]


def test_npz_layouts_its_own_val_split_and_text_labels(tmp_path):
    rng = np.random.default_rng(0)
    flat = tmp_path / "flat.npz"
    np.savez(flat, x=rng.normal(size=(50, 32)), y=np.array(["a", "b"] * 25))
    assert data.spec(f"npz:{flat}").input_shape == (32,)  # (N, F): a table ...
    np.savez(flat, x=rng.normal(size=(50, 32)), y=np.array(["a", "b"] * 25), layout="signal")
    assert data.spec(f"npz:{flat}").input_shape == (1, 32)  # ... or N signals of length 32, when it says so
    grey = tmp_path / "grey.npz"
    x = rng.integers(0, 256, size=(40, 12, 12)).astype(np.uint8)
    np.savez(grey, x=x, y=np.arange(40) % 2, x_val=x[:6], y_val=np.arange(6) % 2)
    spec = data.spec(f"npz:{grey}")
    assert spec.input_shape == (1, 12, 12) and spec.class_names == ("0", "1")  # (N, H, W) square: images
    bundle = data.load(f"npz:{grey}", val_fraction=0.3)
    assert len(bundle.y_val) == 6 and len(bundle.y_train) + len(bundle.y_test) == 40  # its own val, not 30 %
    assert float(bundle.raw(bundle.x_test).max()) <= 1.0  # uint8 scaled into [0, 1]


# -- image folders ----------------------------------------------------------------------------------
def test_an_image_folder_with_train_and_val_takes_its_splits_from_them(tmp_path, runs_dir):
    root = tmp_path / "pets"
    for split, n in (("train", 8), ("Validation", 3)):
        for cls, colour in (("cat", "orange"), ("dog", "brown")):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                (root / split / cls / f"{i}.png").write_bytes(png(colour))
    spec = data.spec(f"folder:{root}", image_size=8)
    assert spec.class_names == ("cat", "dog") and "in train/, val/" in spec.description
    assert spec.notes[:2] == ("train: train/ (16 images)", "val: Validation/ (6 images)")
    assert any("no test/ folder" in n for n in spec.notes)
    bundle = data.load(f"folder:{root}", image_size=8, val_fraction=0.5)
    assert len(bundle.y_val) == 6 and len(bundle.y_test) == 4 and len(bundle.y_train) == 12
    (root / "test" / "cat").mkdir(parents=True)
    (root / "test" / "cat" / "0.png").write_bytes(png("orange"))
    data.load.cache_clear()
    bundle = data.load(f"folder:{root}", image_size=8)
    assert len(bundle.y_test) == 1 and len(bundle.y_train) == 16  # test/ used as it is
    out = kd("train", "--dataset", f"folder:{root}", "--image-size", "8", "--epochs", "2")
    assert out.returncode == 0 and "val: Validation/ (6 images)" in out.stderr, out.stderr  # said where it came from
    (root / "test" / "bird").mkdir()
    (root / "test" / "bird" / "0.png").write_bytes(png("blue"))
    with pytest.raises(DataError, match="class 'bird', which .*train lacks"):
        data.spec(f"folder:{root}", image_size=8)


def test_a_zip_wrapping_one_folder_with_train_and_test_reads_the_same_way(tmp_path, runs_dir):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for split, n in (("train", 6), ("test", 2)):
            for cls, colour in (("round", "green"), ("spiky", "red")):
                for i in range(n):
                    z.writestr(f"leaves/{split}/{cls}/{i}.png", png(colour))
    name = service.save_image_zip(buf.getvalue(), "leaves.zip")
    spec = service.dataset_spec(name, image_size=8)
    assert spec.notes[:2] == ("train: train/ (12 images)", "test: test/ (4 images)")
    assert service.dataset_name(name) == "leaves.zip"
    out = kd("train", "--dataset", name, "--image-size", "8", "--epochs", "1", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["models"]["teacher"]["accuracy"] > 0.5  # the test/ folder's 4 images


# -- uploads of tables and arrays ---------------------------------------------------------------------
def test_an_uploaded_csv_or_npz_is_kept_and_named_by_its_file(tmp_path, runs_dir, monkeypatch):
    csv = table().to_csv(index=False).encode()
    name = service.save_data_file(csv, "my lab.csv")
    assert name.startswith("table:") and service.dataset_spec(name).input_shape == (5,)
    assert service.dataset_name(name) == "my lab.csv"
    path = signals(tmp_path / "s.npz")
    name = service.save_data_file(path.read_bytes(), "ecg.npz")
    assert name.startswith("npz:") and service.dataset_name(name) == "ecg.npz"
    with pytest.raises(KDError, match=r"notes.txt: a data file must be \.csv"):
        service.save_data_file(b"hello", "notes.txt")
    monkeypatch.setenv("KD_MAX_UPLOAD_MB", "0.001")
    with pytest.raises(KDError, match="over the 0.001 MB limit \\(KD_MAX_UPLOAD_MB\\)"):
        service.save_data_file(csv, "big.csv")
    kept = sorted(p.name for p in (runs_dir / "uploads").glob("*/*.*"))
    assert kept == ["ecg.npz", "my lab.csv"]  # under their own names; nothing kept of the refused ones


# -- bad input: one message naming the file, exit 2, nothing in the store ------------------------------
def _bad_files(tmp: Path) -> list[tuple[str, str]]:
    """(dataset, the message's words) for each kind of bad file."""
    out = []
    (tmp / "empty.csv").write_bytes(b"")
    out.append(("table:" + str(tmp / "empty.csv"), "empty.csv is empty"))
    (tmp / "broken.parquet").write_bytes(b"not a parquet file at all")
    out.append(("table:" + str(tmp / "broken.parquet"), "broken.parquet: cannot be read as parquet"))
    table().to_csv(tmp / "nolabel.csv", index=False)
    out.append(("table:" + str(tmp / "nolabel.csv") + "#label=diagnosis", "no column 'diagnosis'"))
    one = table()
    one["outcome"] = "yes"
    one.to_csv(tmp / "one.csv", index=False)
    out.append(("table:" + str(tmp / "one.csv"), "one.csv: every example has the label 'yes'; need at least 2"))
    small = table(40)
    small.loc[0, "outcome"] = "maybe"
    small.to_csv(tmp / "small.csv", index=False)
    out.append(("table:" + str(tmp / "small.csv"), "small.csv: class 'maybe' has 1 example(s)"))
    wide = table(200)
    wide["id"] = [f"p{i}" for i in range(200)]
    wide.to_csv(tmp / "wide.csv", index=False)  # the last column, so taken for the label
    out.append(("table:" + str(tmp / "wide.csv"), "label column 'id' (the last; --label names another) has 200"))
    out.append(("table:" + str(tmp / "wide.csv") + "#label=outcome", "column 'id' holds 200 distinct text values"))
    np.savez(tmp / "shapes.npz", x=np.zeros((10, 4)), y=np.zeros(9))
    out.append(("npz:" + str(tmp / "shapes.npz"), "'x' has 10 examples but 'y' has 9 labels"))
    np.savez(tmp / "text.npz", x=np.array([["a", "b"]] * 10), y=np.arange(10) % 2)
    out.append(("npz:" + str(tmp / "text.npz"), "'x' holds <U1 values; inputs must be numbers"))
    np.savez(tmp / "noy.npz", x=np.zeros((10, 4)))
    out.append(("npz:" + str(tmp / "noy.npz"), "noy.npz: no array 'y'"))
    (tmp / "junk.npz").write_bytes(b"PK not really")
    out.append(("npz:" + str(tmp / "junk.npz"), "junk.npz: cannot be read as a NumPy .npz archive"))
    out.append(("npz:" + str(tmp / "gone.npz"), "gone.npz: cannot be read (No such file"))
    return out


def test_each_bad_file_is_one_message_naming_it_and_exit_2_from_the_cli(tmp_path, runs_dir):
    bad = _bad_files(tmp_path)
    for dataset, words in bad:
        name, _, label = dataset.partition("#label=")
        with pytest.raises(DataError) as e:
            data.spec(name, label=label)
        assert words in str(e.value), (dataset, str(e.value))
    for dataset, words in bad[::4]:  # the CLI says the same, in one line
        name, _, label = dataset.partition("#label=")
        out = kd("train", "--dataset", name, *(["--label", label] if label else []), "--epochs", "1")
        assert out.returncode == 2 and words in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not runs_dir.exists() or not any(p.name != "uploads" for p in runs_dir.iterdir() if p.is_dir())


def test_a_table_over_the_memory_limit_is_refused_naming_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    table(2000).to_csv(path, index=False)
    monkeypatch.setenv("KD_MAX_DATA_MB", "0.1")
    with pytest.raises(DataError, match=r"t.csv is .* over half the 0.1 MB limit .*KD_MAX_DATA_MB"):
        data.spec(f"table:{path}")


def test_a_name_of_a_kind_without_a_path_is_refused_by_the_config():
    out = kd("train", "--dataset", "npz:", "--dry-run")
    assert out.returncode == 2 and "npz: needs a path" in out.stderr
    assert uploads.original_name("table:/nowhere/data.csv") is None


def test_files_as_people_save_them_read_right(tmp_path):
    """Channels last (Keras, PIL), a spreadsheet's semicolons, pandas' row numbers, labels that
    are numbers written as text, bytes labels, Kaggle's split folder names; one pixel scale for
    every split."""
    rng = np.random.default_rng(0)
    rgb = tmp_path / "rgb.npz"
    x = rng.integers(0, 256, (30, 16, 16, 3)).astype(np.float32)  # 0..255 floats, channels last
    np.savez(rgb, x=x, y=np.arange(30) % 2, x_test=x[:6] * 0.2, y_test=np.arange(6) % 2)
    spec = data.spec(f"npz:{rgb}")
    assert spec.input_shape == (3, 16, 16) and "channels last" in spec.notes[0] and "divided by" in spec.notes[0]
    a = data.owndata.read(f"npz:{rgb}")
    assert a.x_tv.max() <= 1.0 and a.x_test.max() <= 0.2 + 1e-6  # test scaled by x's scale, not its own maximum
    assert np.allclose(a.x_tv[0, :, 2, 5], x[0, 2, 5] / x.max())
    wave = tmp_path / "wave.npz"
    np.savez(wave, x=rng.normal(size=(40, 500, 3)), y=np.array([b"on", b"off"] * 20))  # (N, L, C), bytes labels
    spec = data.spec(f"npz:{wave}")
    assert spec.input_shape == (3, 500) and spec.class_names == ("off", "on")

    semi = tmp_path / "export.csv"
    df = table(100)
    df["outcome"] = np.where(df["outcome"] == "yes", "10", "2")  # numbers written as text
    df.to_csv(semi, sep=";")  # with pandas' row numbers as the first column
    spec = data.spec(f"table:{semi}")
    assert spec.input_shape == (5,) and spec.class_names == ("2", "10")  # 2 before 10
    assert any("'Unnamed: 0' holds the row numbers" in n for n in spec.notes)

    for split in ("training_set", "test_set"):
        for cls, colour in (("cat", "orange"), ("dog", "brown")):
            (tmp_path / "kaggle" / split / cls).mkdir(parents=True)
            for i in range(3):
                (tmp_path / "kaggle" / split / cls / f"{i}.png").write_bytes(png(colour))
    spec = data.spec(f"folder:{tmp_path / 'kaggle'}", image_size=8)
    assert spec.class_names == ("cat", "dog") and spec.notes[0] == "train: training_set/ (6 images)"


def test_labels_that_cannot_train_are_refused_by_name(tmp_path):
    only_test = tmp_path / "only_test.npz"
    np.savez(only_test, x=np.zeros((10, 4)), y=np.arange(10) % 2, x_test=np.zeros((3, 4)), y_test=np.array([0, 1, 2]))
    with pytest.raises(DataError, match="class '2' is in 'y_test' but not in 'y'"):
        data.spec(f"npz:{only_test}")
    nan = tmp_path / "nan.npz"
    np.savez(nan, x=np.zeros((10, 4)), y=np.array([0.0, 1.0, np.nan] + [1.0] * 7))
    with pytest.raises(DataError, match="'y' is missing 1 label"):
        data.spec(f"npz:{nan}")
    onehot = tmp_path / "onehot.npz"
    np.savez(onehot, x=np.zeros((10, 4)), y=np.eye(2)[np.arange(10) % 2])
    with pytest.raises(DataError, match=r"one-hot\? store y.argmax\(1\)"):
        data.spec(f"npz:{onehot}")
