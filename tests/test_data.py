"""kd.data: splits, normalisation, caching, the offline path and folder:PATH errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kd import data
from kd.errors import ConfigError, DataError, UnknownKeyError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # /work/shared/data


def _check_bundle(b: data.DataBundle, shape, classes) -> None:
    assert b.spec.input_shape == shape and b.spec.num_classes == classes == len(b.spec.class_names)
    for x, y in ((b.x_train, b.y_train), (b.x_val, b.y_val), (b.x_test, b.y_test)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.device.type == "cpu"
        assert tuple(x.shape[1:]) == shape and len(x) == len(y)
        assert (len(y) == 0) or (0 <= int(y.min()) and int(y.max()) < classes)


# -- digits --------------------------------------------------------------------------------
def test_digits_shapes_splits_and_normalisation():
    b = data.load("digits")
    _check_bundle(b, (1, 8, 8), 10)
    assert len(b.y_test) == 360 and len(b.y_train) + len(b.y_val) == 1797 - 360
    assert len(b.y_val) == round(0.1 * 1437)
    assert torch.bincount(b.y_test, minlength=10).min() >= 35  # stratified
    # the three splits partition the data set: same multiset of (image, label) rows as sklearn's
    from sklearn.datasets import load_digits

    d = load_digits()
    ours = torch.cat([b.raw(x).flatten(1) * 16 for x in (b.x_train, b.x_val, b.x_test)]).round()
    labels = torch.cat([b.y_train, b.y_val, b.y_test])
    mine = sorted(map(tuple, torch.cat([ours, labels[:, None].float()], 1).int().tolist()))
    theirs = sorted(map(tuple, np.concatenate([d.data, d.target[:, None]], 1).astype(int).tolist()))
    assert mine == theirs
    m, s = b.x_train.mean(dim=(0, 2, 3)), b.x_train.std(dim=(0, 2, 3))
    assert torch.allclose(m, torch.zeros(1), atol=1e-4) and torch.allclose(s, torch.ones(1), atol=1e-3)
    raw = b.raw(b.x_test)
    assert raw.min() >= 0 and raw.max() <= 1
    assert torch.allclose(raw * 16, (raw * 16).round(), atol=1e-4)  # back to the original 0..16 levels
    assert data.spec("digits") == b.spec


def test_digits_deterministic_and_val_independent_of_global_seed():
    data.load.cache_clear()
    torch.manual_seed(1)
    a = data.load("digits")
    data.load.cache_clear()
    torch.manual_seed(123)
    np.random.seed(123)
    b = data.load("digits")
    assert a is not b
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.mean == b.mean and a.std == b.std
    assert data.load("digits") is b  # cached
    assert data.load("digits", image_size=64) is b  # arguments digits ignores do not make a copy


def test_val_fraction_bounds_and_zero():
    b = data.load("digits", val_fraction=0.0)
    assert b.x_val.shape == (0, 1, 8, 8) and len(b.y_train) == 1437
    assert len(data.load("digits", val_fraction=0.5).y_val) == round(0.5 * 1437)
    for bad in (-0.1, 0.6, "0.1", True):
        with pytest.raises(ConfigError) as e:
            data.load("digits", val_fraction=bad)
        assert e.value.field == "val_fraction"
    for bad in (7, 257, 32.0):
        with pytest.raises(ConfigError) as e:
            data.spec("digits", image_size=bad)
        assert e.value.field == "image_size"


def test_unknown_key_lists_keys():
    with pytest.raises(UnknownKeyError) as e:
        data.load("mnsit")
    msg = str(e.value)
    for key in ("digits", "mnist", "fashion-mnist", "cifar10", "moons", "spirals", "circles", "folder:PATH"):
        assert key in msg
    with pytest.raises(UnknownKeyError):
        data.spec("mnsit")
    assert set(data.DATASETS.keys()) == {"digits", "mnist", "fashion-mnist", "cifar10", "moons", "spirals", "circles"}
    assert all("\n" not in e.description and e.obj.spec.name == e.key for e in data.DATASETS)


def test_specs_known_without_loading(tmp_path):
    assert data.spec("cifar10", data_dir=str(tmp_path)).input_shape == (3, 32, 32)
    assert data.spec("fashion-mnist").class_names[-1] == "Ankle boot"
    assert data.spec("mnist").input_shape == (1, 28, 28)
    assert list(tmp_path.iterdir()) == []  # nothing fetched or created


def test_resolve_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path / "env"))
    assert data.resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    assert data.resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("KD_DATA_DIR")
    assert data.resolve_data_dir(None) == Path.home().resolve() / ".cache" / "distill-lab" / "data"


# -- torchvision sets ----------------------------------------------------------------------
@pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason=f"no offline MNIST in {SHARED}")
def test_mnist_from_shared_folder(monkeypatch):
    monkeypatch.setattr(data, "_download", lambda *a: pytest.fail("must not download"))
    b = data.load("mnist", str(SHARED))
    _check_bundle(b, (1, 28, 28), 10)
    n_val = round(0.1 * 24_680)
    assert len(b.y_val) == n_val and len(b.y_train) == 24_680 - n_val and len(b.y_test) == 10_000
    assert (torch.bincount(b.y_train, minlength=10) > 1500).all()
    assert (torch.bincount(b.y_test, minlength=10) > 800).all()
    assert abs(b.x_train.mean().item()) < 1e-3
    assert data.load("mnist", str(SHARED)) is b
    assert not (SHARED / "MNIST" / "processed").exists()  # read-only folder: nothing written


def test_missing_torchvision_data_is_one_clear_error(monkeypatch, tmp_path):
    def offline(cls, root):
        raise OSError("cannot reach ossci-datasets.s3.amazonaws.com: offline?")

    monkeypatch.setattr(data, "_download", offline)
    for name, expected in (("mnist", "train-images-idx3-ubyte"), ("cifar10", "data_batch_1")):
        with pytest.raises(DataError) as e:
            data.load(name, str(tmp_path / "nowhere"))
        msg = str(e.value)
        assert str(tmp_path / "nowhere") in msg and expected in msg and "offline" in msg
        assert "KD_DATA_DIR" in msg and "\n" not in msg
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DataError, match="env"):
        data.load("fashion-mnist")


def test_real_download_path_fails_fast_when_unreachable(monkeypatch, tmp_path, capsys):
    """The real _download, pointed at a host that never resolves (.invalid): quick, quiet DataError."""
    import time

    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd.MNIST, "mirrors", ["https://distill-lab-test.invalid/mnist/"])
    t = time.time()
    with pytest.raises(DataError, match="download failed"):
        data.load("mnist", str(tmp_path / "dl"))
    assert time.time() - t < 10
    assert capsys.readouterr().out == ""


# -- 2-D sets ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,classes", [("moons", 2), ("spirals", 3), ("circles", 2)])
def test_2d_sets_and_grid(name, classes):
    b = data.load(name)
    _check_bundle(b, (2,), classes)
    assert len(b.y_train) + len(b.y_val) == 2000 and len(b.y_test) == 1000
    assert torch.bincount(b.y_train, minlength=classes).min() > 500
    assert torch.allclose(b.x_train.mean(0), torch.zeros(2), atol=1e-4)
    xx, yy, pts = data.grid(b, n=50)
    assert xx.shape == yy.shape == (50, 50) and pts.shape == (2500, 2)
    assert torch.equal(pts.view(50, 50, 2)[..., 0], xx) and torch.equal(pts.view(50, 50, 2)[..., 1], yy)
    assert (xx[0, 1:] > xx[0, :-1]).all() and (yy[1:, 0] > yy[:-1, 0]).all()
    everything = torch.cat([b.x_train, b.x_val, b.x_test])
    assert (pts.min(0).values < everything.min(0).values).all()
    assert (pts.max(0).values > everything.max(0).values).all()
    # raw coordinates recoverable
    raw = b.raw(b.x_train)
    assert torch.allclose((raw - torch.tensor(b.mean)) / torch.tensor(b.std), b.x_train, atol=1e-5)
    with pytest.raises(ValueError):
        data.grid(data.load("digits"))


# -- folder:PATH ---------------------------------------------------------------------------
def _make_folder(root: Path, classes=("cat", "dog", "owl"), n=6) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            w, h = 10 + 7 * i, 12 + 5 * c  # various sizes
            mode = ["RGB", "L", "RGBA"][i % 3]
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            im = Image.fromarray(arr).convert(mode)
            im.save(root / cls / f"img{i}.{'png' if i % 2 or mode == 'RGBA' else 'jpg'}")
    (root / classes[0] / "notes.txt").write_text("not an image")  # ignored: not an image
    return root


def test_folder_loads(tmp_path):
    root = _make_folder(tmp_path / "imgs")
    sp = data.spec(f"folder:{root}", image_size=16)
    assert sp.input_shape == (3, 16, 16) and sp.class_names == ("cat", "dog", "owl")
    b = data.load(f"folder:{root}", image_size=16, val_fraction=0.1)
    _check_bundle(b, (3, 16, 16), 3)
    assert b.spec == sp
    assert len(b.y_train) + len(b.y_val) + len(b.y_test) == 18
    assert torch.equal(torch.bincount(b.y_test, minlength=3), torch.tensor([1, 1, 1]))  # round(0.2 * 6) each
    assert len(b.mean) == 3 and b.raw(b.x_train).min() >= 0 and b.raw(b.x_train).max() <= 1
    assert data.load(f"folder:{root}", image_size=16, val_fraction=0.1) is b


def test_folder_tiny_classes_still_work(tmp_path):
    root = _make_folder(tmp_path / "imgs", classes=("a", "b"), n=2)
    b = data.load(f"folder:{root}", image_size=8, val_fraction=0.0)
    assert len(b.y_train) == 2 and len(b.y_test) == 2


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        data.spec(f"folder:{tmp_path / 'file.txt'}")
    one = _make_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(DataError, match="at least 2"):
        data.load(f"folder:{one}")

    root = _make_folder(tmp_path / "empty_class")
    (root / "zebra").mkdir()
    with pytest.raises(DataError) as e:
        data.spec(f"folder:{root}")
    assert str(root / "zebra") in str(e.value)

    root = _make_folder(tmp_path / "corrupt")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError) as e:
        data.load(f"folder:{root}")
    assert "broken.png" in str(e.value)

    with pytest.raises(ConfigError):
        data.load(f"folder:{tmp_path}", image_size=300)
    with pytest.raises(DataError, match="needs a path"):
        data.spec("folder:")


def test_the_students_share_is_stratified_fixed_and_sorted():
    y = data.load("digits").y_train
    torch.manual_seed(123)  # the run's seed must not move it
    keep = data.stratified_subset(y, 0.05)
    torch.manual_seed(456)
    assert torch.equal(keep, data.stratified_subset(y, 0.05))
    assert torch.equal(keep, keep.sort().values) and len(set(keep.tolist())) == len(keep)
    for c in range(10):
        assert (y[keep] == c).sum() == max(1, round(0.05 * int((y == c).sum())))
    assert len(data.stratified_subset(y, 0.001)) == 10  # at least one example of every class
    assert torch.equal(data.stratified_subset(y, 1.0), torch.arange(len(y)))


def test_folder_paths_that_cannot_be_listed_are_one_clear_error(tmp_path):
    with pytest.raises(DataError) as e:  # pseudo-files, processes that vanish, permission errors
        data.spec("folder:/proc")
    assert str(e.value).startswith("folder: ") and "/proc" in str(e.value) and "\n" not in str(e.value)

    long = "/x" * 3000
    for call in (data.spec, data.load):
        with pytest.raises(DataError) as e:
            call(f"folder:{long}")
        msg = str(e.value)
        assert "/x/x/x" in msg and "…" in msg and len(msg) < 300, msg

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(DataError, match="loop"):
        data.spec(f"folder:{tmp_path / 'loop'}")
    with pytest.raises(DataError, match="not a valid path"):
        data.spec("folder:/tmp/a\0b")


@pytest.mark.parametrize("error", [PermissionError, FileNotFoundError])
def test_a_folder_failing_mid_listing_is_a_data_error(tmp_path, monkeypatch, error):
    import os

    root = _make_folder(tmp_path / "imgs")
    scandir = os.scandir

    def failing(path):
        if str(path).endswith("dog"):  # no permission, or removed while being listed
            raise error(13, "cannot list", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", failing)
    with pytest.raises(DataError) as e:
        data.spec(f"folder:{root}")
    assert str(e.value) == f"folder: cannot list {root} (cannot list: {root / 'dog'})"


@pytest.mark.parametrize(
    "mode,top", [("I;16", 65535), ("I;16B", 65535), ("I", 65535), ("I", 200_000), ("F", 65535), ("F", 1.0)]
)
def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path, mode, top):
    from PIL import Image

    grad = np.linspace(0, 1, 32 * 32).reshape(32, 32)  # the brightness each pixel should get
    if mode.startswith("I;16"):
        im = Image.fromarray((grad * 65535).round().astype(np.uint16))  # mode I;16
        assert im.mode == "I;16"
        im = im if mode == "I;16" else Image.frombytes(mode, im.size, (grad * 65535).round().astype(">u2").tobytes())
    elif mode == "I":
        im = Image.fromarray((grad * top).round().astype(np.int32))
    else:
        im = Image.fromarray((grad * top).astype(np.float32))
    assert im.mode == mode
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(2):
            im.save(tmp_path / "imgs" / cls / f"{i}.{'tif' if mode != 'I;16' else 'png'}")
    b = data.load(f"folder:{tmp_path / 'imgs'}", image_size=32, val_fraction=0.0)
    raw = b.raw(torch.cat([b.x_train, b.x_test]))
    expected = torch.as_tensor(grad, dtype=torch.float32).expand_as(raw)
    assert (raw - expected).abs().max() < 1 / 255  # every channel, every image
    assert raw.min() >= 0 and raw.max() <= 1 and (raw == 1).float().mean() < 0.01

    small = data.load(f"folder:{tmp_path / 'imgs'}", image_size=16, val_fraction=0.0)
    raw = small.raw(small.x_train)
    assert abs(raw.mean().item() - 0.5) < 0.02 and raw.min() < 0.05 and raw.max() > 0.95


@pytest.mark.parametrize("name", [e.key for e in data.DATASETS if not e.obj.needs_dir])
def test_every_bundled_set_loads_as_its_spec_says(name):
    """Any set registered without a download (docs/extending.md, "A data set"): shapes, labels and
    class counts as declared, three disjoint splits that each hold every class, and training
    inputs standardised with the training rows' statistics."""
    spec = data.spec(name)
    b = data.load(name, val_fraction=0.1)
    for x, y in ((b.x_train, b.y_train), (b.x_val, b.y_val), (b.x_test, b.y_test)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert tuple(x.shape[1:]) == spec.input_shape and len(x) == len(y) > 0
        assert set(y.tolist()) == set(range(spec.num_classes))
    assert len(spec.class_names) == spec.num_classes
    per_channel = b.x_train.transpose(0, 1).reshape(b.x_train.shape[1], -1)  # (C or D, everything else)
    assert per_channel.mean(1).abs().max() < 1e-3 and (per_channel.std(1) - 1).abs().max() < 1e-2
