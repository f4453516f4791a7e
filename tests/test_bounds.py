"""Bounds on a person's data: the memory a decoded data set takes, the number of images, and the
disk taken by uploads. Each refusal is one line naming the bound and the variable that moves it,
read when the call is made."""

import io
import os
import zipfile

import pytest
import torch
from PIL import Image
from safetensors.torch import save

from kd import data, uploads
from kd.cli import main
from kd.errors import ConfigError, DataError


def tiny_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), "red").save(buf, "PNG")
    return buf.getvalue()


def zip_bytes(files: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, content in files.items():
            z.writestr(name, content)
    return buf.getvalue()


def make_folder(root, per_class: dict[str, int]):
    """One tiny PNG per class, hard-linked under many names: quick to make by the ten thousand."""
    for cls, n in per_class.items():
        (root / cls).mkdir(parents=True)
        first = root / cls / "0.png"
        first.write_bytes(tiny_png())
        for i in range(1, n):
            os.link(first, root / cls / f"{i}.png")
    return root


def nothing_decoded(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(Image, "open", refuse)


# -- data sets --------------------------------------------------------------------------------
def test_a_folder_of_20000_images_at_size_128_is_refused_before_decoding(tmp_path, monkeypatch, capsys):
    folder = make_folder(tmp_path / "shots", {"day": 10_000, "night": 10_000})
    nothing_decoded(monkeypatch)
    expected = (
        "folder: 20,000 images at 128x128 take about 8.8 GB in memory, over the 4,096 MB limit "
        "(KD_MAX_DATA_MB); choose a smaller image size or fewer images"
    )
    with pytest.raises(DataError) as e:
        data.spec(f"folder:{folder}", image_size=128)
    assert str(e.value) == expected
    with pytest.raises(DataError) as e:
        data.load(f"folder:{folder}", image_size=128)
    assert str(e.value) == expected
    # the CLI says it in one line naming --dataset, exit code 2
    assert main(["train", "--dataset", f"folder:{folder}", "--image-size", "128", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --dataset: {expected}\n"
    # the same images at 16x16 fit (about 138 MB): listed, still not decoded
    assert data.spec(f"folder:{folder}", image_size=16).num_classes == 2


def test_the_memory_bound_is_read_at_call_time(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "imgs", {"a": 20, "b": 20})
    # 40 images * 3 * 64 * 64 * 9 bytes = 4.4 MB
    monkeypatch.setenv("KD_MAX_DATA_MB", "4")
    nothing_decoded(monkeypatch)
    with pytest.raises(
        DataError,
        match=r"40 images at 64x64 take about 4.42 MB in memory, over the 4 MB limit "
        r"\(KD_MAX_DATA_MB\)",
    ):
        data.spec(f"folder:{root}", image_size=64)
    with pytest.raises(DataError, match="KD_MAX_DATA_MB"):
        data.load(f"folder:{root}", image_size=64)
    monkeypatch.undo()
    monkeypatch.setenv("KD_MAX_DATA_MB", "5")
    assert len(data.load(f"folder:{root}", image_size=64).y_test) == 8


def test_the_registered_sets_fit_the_default_memory_bound():
    for name, n in (("mnist", 70_000), ("fashion-mnist", 70_000), ("cifar10", 60_000)):
        c, h, w = data.spec(name).input_shape
        assert n * c * h * w * 9 < data.env_limit("KD_MAX_DATA_MB", 4096) * 1e6, name


def test_a_bad_bound_is_a_clear_error(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "imgs", {"a": 2, "b": 2})
    for bad in ("lots", "0", "-5", "nan"):
        monkeypatch.setenv("KD_MAX_DATA_MB", bad)
        with pytest.raises(DataError, match=f"KD_MAX_DATA_MB={bad!r} is not a positive number"):
            data.spec(f"folder:{root}")
    monkeypatch.setenv("KD_MAX_DATA_MB", "")  # empty: the default
    assert data.spec(f"folder:{root}").num_classes == 2


def test_too_many_images_in_a_folder_stop_the_listing(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "imgs", {c: 3 for c in "abcdef"})
    monkeypatch.setenv("KD_MAX_IMAGES", "4")
    listed = []
    scandir = os.scandir

    def counting(path):
        listed.append(str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counting)
    with pytest.raises(DataError) as e:
        data.spec(f"folder:{root}")
    assert str(e.value).startswith(f"folder: {root} holds more than 4 images, the limit (KD_MAX_IMAGES)")
    assert not any(p.endswith(("/c", "/d", "/e", "/f")) for p in listed)  # stopped in class b
    monkeypatch.setenv("KD_MAX_IMAGES", "18")
    assert data.spec(f"folder:{root}").num_classes == 6


def test_a_tree_of_other_files_is_not_walked_to_the_end(tmp_path, monkeypatch):
    """folder:/ or a home folder: images are few, other files many; the listing gives up early."""
    root = make_folder(tmp_path / "tree", {"a": 2, "b": 2})
    for i in range(5):
        (root / "a" / f"sub{i}").mkdir()
        for j in range(40):
            (root / "a" / f"sub{i}" / f"notes{j}.txt").write_text("x")
    monkeypatch.setenv("KD_MAX_IMAGES", "10")  # 10 per image allowed + 1,000: 1,100 entries
    assert data.spec(f"folder:{root}").num_classes == 2
    monkeypatch.setenv("KD_MAX_IMAGES", "4")  # ... 1,040 entries
    for i in range(5, 30):
        (root / "a" / f"sub{i}").mkdir()
        for j in range(40):
            (root / "a" / f"sub{i}" / f"notes{j}.txt").write_text("x")
    with pytest.raises(DataError, match="too many files and folders to be a data set of images"):
        data.spec(f"folder:{root}")


# -- uploads ----------------------------------------------------------------------------------
def test_a_bad_upload_bound_is_a_clear_error(tmp_path, monkeypatch):
    for name in ("KD_MAX_UPLOAD_MB", "KD_MAX_UPLOADS_MB", "KD_MAX_IMAGES"):
        monkeypatch.setenv(name, "many")
        with pytest.raises(ConfigError, match=f"{name}='many' is not a positive number") as e:
            uploads.save_image_zip(zip_bytes({"a/1.png": tiny_png(), "b/1.png": tiny_png()}), tmp_path)
        assert e.value.field == "dataset" and not (tmp_path / "uploads").exists()
        monkeypatch.delenv(name)


def test_too_many_members_in_a_zip_are_refused_before_unpacking(tmp_path, monkeypatch):
    blob = tiny_png()
    archive = zip_bytes(
        {f"set/{c}/{i}.png": blob for c in "ab" for i in range(3)} | {"__MACOSX/._x": b"", "set/.DS_Store": b""}
    )
    monkeypatch.setenv("KD_MAX_IMAGES", "5")
    with pytest.raises(ConfigError, match=r"the archive holds 6 files, over the limit of 5 \(KD_MAX_IMAGES\)") as e:
        uploads.save_image_zip(archive, tmp_path)
    assert e.value.field == "dataset" and not (tmp_path / "uploads").exists()
    monkeypatch.setenv("KD_MAX_IMAGES", "6")  # macOS metadata and dot-files are not counted
    assert uploads.save_image_zip(archive, tmp_path).name == "set"


def test_the_disk_taken_by_all_uploads_is_bounded(tmp_path, monkeypatch):
    big = os.urandom(6000)  # random: the zip is as big as what it unpacks to
    first = zip_bytes({"a/1.png": big, "b/1.png": tiny_png()})
    second = zip_bytes({"a/2.png": big, "b/2.png": tiny_png()})
    monkeypatch.setenv("KD_MAX_UPLOADS_MB", "0.01")  # 10,000 bytes
    uploads.save_image_zip(first, tmp_path)
    kept = sorted((tmp_path / "uploads").iterdir())
    with pytest.raises(ConfigError) as e:
        uploads.save_image_zip(second, tmp_path)
    msg = e.value.message
    assert e.value.field == "dataset" and str(tmp_path / "uploads") in msg and "KD_MAX_UPLOADS_MB" in msg
    assert "0.01 MB limit" in msg
    assert sorted((tmp_path / "uploads").iterdir()) == kept  # nothing half-unpacked left behind
    assert uploads.save_image_zip(first, tmp_path) == kept[0]  # the same upload again is kept, not refused
    with pytest.raises(ConfigError, match="KD_MAX_UPLOADS_MB") as e:
        uploads.save_checkpoint(save({"w": torch.zeros(1200)}), tmp_path)  # 4,800 bytes of weights
    assert e.value.field == "teacher_checkpoint"
    monkeypatch.setenv("KD_MAX_UPLOADS_MB", "1")
    assert uploads.save_image_zip(second, tmp_path).is_dir()


def test_the_per_upload_limit_is_read_at_call_time(tmp_path, monkeypatch):
    archive = zip_bytes({"a/1.png": b"\0" * 3000, "b/1.png": b"\0" * 3000}, zipfile.ZIP_DEFLATED)  # 6,000 unpacked
    monkeypatch.setenv("KD_MAX_UPLOAD_MB", "0.005")
    with pytest.raises(ConfigError, match=r"unpacks to 0.006 MB, over the 0.005 MB limit \(KD_MAX_UPLOAD_MB\)"):
        uploads.save_image_zip(archive, tmp_path)
    assert not (tmp_path / "uploads").exists()
    monkeypatch.setenv("KD_MAX_UPLOAD_MB", "0.01")
    assert uploads.save_image_zip(archive, tmp_path).is_dir()
