"""Bounds on a person's data: the memory a decoded data set takes, the number of images, and the
disk taken by uploads. Each refusal is one line naming the bound and the variable that moves it,
read when the call is made."""
import io
import os

import pytest
from PIL import Image

from kd import data
from kd.cli import main
from kd.errors import DataError


def tiny_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), "red").save(buf, "PNG")
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
    expected = ("folder: 20,000 images at 128x128 take about 8.8 GB in memory, over the 4,096 MB limit "
                "(KD_MAX_DATA_MB); choose a smaller image size or fewer images")
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
    with pytest.raises(DataError, match=r"40 images at 64x64 take about 4.42 MB in memory, over the 4 MB limit "
                                        r"\(KD_MAX_DATA_MB\)"):
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

