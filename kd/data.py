"""Data sets as in-memory tensors with train / val / test splits.

Everything here is small enough to live in memory, so models are fed by slicing tensors
(no DataLoader, no per-sample PIL). Val is carved from train with VAL_SEED, not the
run's seed, so every run is compared on the same val rows; test is only for the final
report. Normalisation statistics come from the train rows left after carving val.
A person's folder:PATH is held to that: at most KD_MAX_IMAGES images (100,000) and
KD_MAX_DATA_MB decoded (4,096), both read from the environment at each call.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torch import Tensor

from kd import owndata
from kd.errors import ConfigError, DataError, UnknownKeyError
from kd.limits import env_limit, human_bytes, num, reason, short
from kd.registry import Registry

VAL_SEED = 1_234_567  # fixed on purpose: the run's seed must not move the val split
TEST_SEED = owndata.TEST_SEED  # the fixed test splits (digits, 2-D sets, folder:PATH, table:, npz:)
SUBSET_SEED = 7_654_321  # the students' share of train (student_fraction): fixed, like val
FOLDER = "folder:"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")

# raw x_trainval (N, *shape) float32 (images in [0, 1]), y_trainval (N,) int64, x_test, y_test
Splits = tuple[Tensor, Tensor, Tensor, Tensor]


@dataclass(frozen=True)
class DataSpec:
    """What a data set looks like, known without loading it (the UI counts params from it)."""

    name: str
    input_shape: tuple[int, ...]  # (C, H, W) for images, (2,) for the 2-D sets
    num_classes: int
    class_names: tuple[str, ...]
    description: str
    notes: tuple[str, ...] = ()  # how a person's files were read (label column, where each split came from)


@dataclass(eq=False)  # eq=False: tensors have no single truth value; the cache hands out identity
class DataBundle:
    """Normalised CPU tensors; x = (raw - mean) / std. Shared by the cache: do not modify in place."""

    spec: DataSpec
    x_train: Tensor  # float32 (N, *input_shape)
    y_train: Tensor  # int64 (N,)
    x_val: Tensor  # may have 0 rows when val_fraction == 0
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    mean: tuple[float, ...]  # per channel (images) / per feature (2-D), from the train rows
    std: tuple[float, ...]

    def _stat(self, values: tuple[float, ...], x: Tensor) -> Tensor:
        # (C,) -> (C, 1, 1) so it broadcasts over (C, H, W) and (N, C, H, W) alike
        shape = (len(values),) + (1,) * (len(self.spec.input_shape) - 1)
        return torch.tensor(values, dtype=x.dtype, device=x.device).view(shape)

    def raw(self, x: Tensor) -> Tensor:
        """Undo the normalisation: images back in [0, 1], 2-D points in their own coordinates."""
        out = x * self._stat(self.std, x) + self._stat(self.mean, x)
        return out.clamp(0.0, 1.0) if len(self.spec.input_shape) == 3 else out


@dataclass(frozen=True)
class Source:
    """A registry entry: its spec, and fetch(root) -> raw Splits (root is None unless needs_dir)."""

    spec: DataSpec
    fetch: Callable[[Path | None], Splits]
    needs_dir: bool = False


DATASETS: Registry[Source] = Registry("data set")


def _add(
    key: str,
    shape: tuple[int, ...],
    classes: list[str],
    description: str,
    fetch: Callable[[Path | None], Splits],
    needs_dir: bool = False,
) -> None:
    spec = DataSpec(key, shape, len(classes), tuple(classes), description)
    DATASETS.add(key, Source(spec, fetch, needs_dir), description)


def _stratified(x: np.ndarray, y: np.ndarray, test_size) -> Splits:
    from sklearn.model_selection import train_test_split

    x_tv, x_te, y_tv, y_te = train_test_split(x, y, test_size=test_size, random_state=TEST_SEED, stratify=y)
    return (
        torch.as_tensor(x_tv, dtype=torch.float32),
        torch.as_tensor(y_tv, dtype=torch.int64),
        torch.as_tensor(x_te, dtype=torch.float32),
        torch.as_tensor(y_te, dtype=torch.int64),
    )


# -- bundled and generated sets ---------------------------------------------------------
def _digits(_root: Path | None) -> Splits:
    from sklearn.datasets import load_digits

    d = load_digits()  # (1797, 64) values 0..16
    return _stratified(d.data.reshape(-1, 1, 8, 8) / 16.0, d.target, 0.2)  # test: 360 rows


def _spirals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = np.arange(n) % 3
    r = rng.uniform(0.05, 1.0, n)  # distance from the centre; arms overlap near it
    theta = 2 * np.pi * (y / 3 + r) + rng.normal(0, 0.2, n)  # each arm makes one full turn
    # noise sized so the arms touch a little: a big MLP does clearly better than a tiny one
    x = np.stack([r * np.cos(theta), r * np.sin(theta)], 1) + rng.normal(0, 0.05, (n, 2))
    return x, y


def _toy(kind: str) -> Callable[[Path | None], Splits]:
    def fetch(_root: Path | None) -> Splits:
        from sklearn import datasets as skd

        n = 3000
        if kind == "moons":
            x, y = skd.make_moons(n, noise=0.2, random_state=TEST_SEED)
        elif kind == "circles":
            x, y = skd.make_circles(n, noise=0.1, factor=0.5, random_state=TEST_SEED)
        else:
            x, y = _spirals(n, np.random.default_rng(TEST_SEED))
        return _stratified(x, y, 1000)  # 2000 train+val, 1000 test

    return fetch


# -- torchvision sets: whole arrays read at once from data_dir ----------------------------
_IDX = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
_CIFAR = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


def _download(cls, root: Path) -> None:
    """Let torchvision fetch the files; raise OSError fast when offline (tests replace this)."""
    url = getattr(cls, "mirrors", [getattr(cls, "url", "")])[0]
    host = urlparse(url).hostname or ""
    result: list[BaseException | None] = [TimeoutError("no answer within 3 s")]

    def probe() -> None:  # DNS lookups ignore socket timeouts, so bound the whole probe in a thread
        try:
            socket.create_connection((host, 443), timeout=2).close()
            result[0] = None
        except OSError as e:
            result[0] = e

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(3)
    if result[0] is not None:
        raise OSError(f"cannot reach {host}: offline?")
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # a stalled mirror fails instead of hanging the app
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torchvision prints per mirror
            for train in (True, False):
                cls(str(root), train=train, download=True)
    finally:
        socket.setdefaulttimeout(old)


def _torchvision(key: str, cls_name: str, sub: str, files: list[str]) -> Callable[[Path | None], Splits]:
    def fetch(root: Path | None) -> Splits:
        import torchvision.datasets as tvd

        assert root is not None
        cls, folder = getattr(tvd, cls_name), root / sub
        if not all((folder / f).is_file() for f in files):
            try:
                _download(cls, root)
            except Exception as e:  # offline, read-only folder, bad mirror: one clear line, no traceback
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise DataError(
                    f"{key}: no data in {root} (expected {folder}{os.sep} with {', '.join(files)}); "
                    f"download failed ({reason}). Put the files there or pass --data-dir / set KD_DATA_DIR"
                ) from None
        try:  # download=False: reads the raw files, writes nothing (the folder may be read-only)
            tr, te = (cls(str(root), train=t, download=False) for t in (True, False))
        except Exception as e:
            raise DataError(f"{key}: cannot read the files in {folder} ({e}); delete them to download again") from None

        def x(ds) -> Tensor:  # MNIST: uint8 tensor (N, 28, 28); CIFAR10: numpy (N, 32, 32, 3)
            d = torch.as_tensor(ds.data)
            d = d.unsqueeze(1) if d.dim() == 3 else d.permute(0, 3, 1, 2)
            return d.float().div_(255.0).contiguous()  # (N, C, H, W) in [0, 1]

        return (
            x(tr),
            torch.as_tensor(tr.targets, dtype=torch.int64),
            x(te),
            torch.as_tensor(te.targets, dtype=torch.int64),
        )

    return fetch


_add(
    "digits",
    (1, 8, 8),
    [str(i) for i in range(10)],
    "scikit-learn's 8x8 handwritten digits (1,797 images, bundled, no download)",
    _digits,
)
_add(
    "mnist",
    (1, 28, 28),
    [str(i) for i in range(10)],
    "MNIST 28x28 handwritten digits (60,000 + 10,000 images; torchvision, ~12 MB download once)",
    _torchvision("mnist", "MNIST", "MNIST/raw", _IDX),
    needs_dir=True,
)
_add(
    "fashion-mnist",
    (1, 28, 28),
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    "Fashion-MNIST 28x28 clothing images, 10 classes (60,000 + 10,000; torchvision, ~30 MB download once)",
    _torchvision("fashion-mnist", "FashionMNIST", "FashionMNIST/raw", _IDX),
    needs_dir=True,
)
_add(
    "cifar10",
    (3, 32, 32),
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "CIFAR-10 32x32 colour photos, 10 classes (50,000 + 10,000; torchvision, ~170 MB download once)",
    _torchvision("cifar10", "CIFAR10", "cifar-10-batches-py", _CIFAR),
    needs_dir=True,
)
_add("moons", (2,), ["0", "1"], "two interleaving half-moons, 2-D, 2 classes (3,000 points, generated)", _toy("moons"))
_add("spirals", (2,), ["0", "1", "2"], "three-arm spiral, 2-D, 3 classes (3,000 points, generated)", _toy("spirals"))
_add("circles", (2,), ["0", "1"], "a circle inside a ring, 2-D, 2 classes (3,000 points, generated)", _toy("circles"))


# -- folder:PATH, a person's own images (ImageFolder layout) -------------------------------
def _check_memory(n_images: int, size: int) -> None:
    """Refuse a folder whose decoded tensors would not fit KD_MAX_DATA_MB, before decoding any."""
    # per value: the float32 tensor read and its copy while val is carved out (2 x 4 bytes), plus headroom
    need = n_images * 3 * size * size * (4 * 2 + 1)
    limit = env_limit("KD_MAX_DATA_MB", 4096)
    if need > limit * 1e6:
        raise DataError(
            f"folder: {n_images:,} images at {size}x{size} take about {human_bytes(need)} in memory, "
            f"over the {num(limit)} MB limit (KD_MAX_DATA_MB); choose a smaller image size or fewer images"
        )


def _images_under(folder: Path, stop_after: float, visits: list[int]) -> list[Path]:
    """Image files anywhere under folder, sorted; symlinked sub-folders are not followed (no loops).
    Listing stops as soon as more than stop_after are found: the rest of a huge tree is never walked.
    visits[0]: entries this listing may still look at (other files too), counted down; at 0 the
    folder is refused, so a folder such as / is not walked to the end."""
    files, todo = [], [folder]
    while todo:
        with os.scandir(todo.pop()) as entries:
            for e in entries:
                visits[0] -= 1
                if visits[0] < 0:
                    raise DataError(
                        f"folder: {short(folder.parent)} holds too many files and folders to be a data "
                        "set of images (over 10 for each image KD_MAX_IMAGES allows); name the folder "
                        "that holds one sub-folder of images per class"
                    )
                if e.name.startswith("."):
                    continue
                if e.is_dir(follow_symlinks=False):
                    todo.append(Path(e.path))
                elif os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file():
                    files.append(Path(e.path))
                    if len(files) > stop_after:
                        return files
    return sorted(files)


def _folder_classes(path: Path, min_images: int = 2, min_classes: int = 2) -> list[tuple[str, list[Path]]]:
    """[(class name, image files)], sorted like ImageFolder; listing only, nothing decoded.
    Any OS error while listing (permissions, a file removed meanwhile, /proc) is a DataError."""
    try:
        if not path.exists():
            raise DataError(f"folder: {short(path)} does not exist")
        if not path.is_dir():
            raise DataError(
                f"folder: {short(path)} is not a folder (expected one sub-folder of images per class; a table "
                "is read from .csv or .parquet, arrays from .npz)"
            )
        dirs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))
        if len(dirs) < min_classes:
            raise DataError(
                f"folder: {short(path)} has {len(dirs)} class sub-folder(s); need at least {min_classes}, one per class"
            )
        limit, n = env_limit("KD_MAX_IMAGES", 100_000), 0
        out, visits = [], [10 * int(limit) + 1_000]
        for d in dirs:
            files = _images_under(d, limit - n, visits)
            n += len(files)
            if n > limit:
                raise DataError(
                    f"folder: {short(path)} holds more than {num(limit)} images, the limit "
                    "(KD_MAX_IMAGES); use fewer images or raise the limit"
                )
            if len(files) < min_images:
                raise DataError(
                    f"folder: class folder {short(d)} has {len(files)} image(s); each class needs at "
                    f"least {min_images} ({'one to train on, one to test on; ' if min_images == 2 else ''}"
                    f"{', '.join(IMAGE_EXTENSIONS)})"
                )
            out.append((d.name, files))
        return out
    except DataError:
        raise
    except OSError as e:
        raise DataError(f"folder: cannot list {short(path)} ({reason(e, path)})") from None


SPLIT_FOLDERS = {  # sub-folder names (any case) that hold a split: PyTorch's tutorials', Kaggle's
    "train": ("train", "training", "train_set", "training_set"),
    "val": ("val", "valid", "validation", "val_set", "valid_set", "validation_set"),
    "test": ("test", "testing", "test_set", "testing_set"),
}
Listing = dict[str, list[tuple[str, list[Path]]]]  # split ("all", or train / val / test) -> classes


def _split_folders(path: Path) -> dict[str, Path]:
    """train/, val/ (valid/, validation/) and test/ sub-folders, when there is a train/ one."""
    found: dict[str, Path] = {}
    for d in sorted(path.iterdir()):
        for split, names in SPLIT_FOLDERS.items():
            if d.is_dir() and d.name.lower() in names:
                found.setdefault(split, d)
    return found if "train" in found else {}


def _folder_listing(path: Path) -> Listing:
    """The folder's classes and their image files, per split where it has train/ (val/, test/)
    sub-folders, else as one "all"; a class in val/ or test/ that train/ lacks is refused."""
    try:
        splits = _split_folders(path) if path.is_dir() else {}
    except OSError as e:
        raise DataError(f"folder: cannot list {short(path)} ({reason(e, path)})") from None
    if not splits:
        return {"all": _folder_classes(path)}
    out = {
        split: _folder_classes(d, 2 if split == "train" and "test" not in splits else 1, 2 if split == "train" else 1)
        for split, d in sorted(splits.items(), key=lambda kv: list(SPLIT_FOLDERS).index(kv[0]))
    }
    known = [c for c, _ in out["train"]]
    for split, classes in out.items():
        extra = [c for c, _ in classes if c not in known]
        if extra:
            raise DataError(
                f"folder: {short(splits[split])} has class {extra[0]!r}, which {short(splits['train'])} lacks; "
                "every class needs training images"
            )
        by_name = dict(classes)
        out[split] = [(c, by_name.get(c, [])) for c in known]  # train's order: label i is the same class everywhere
    limit, n = env_limit("KD_MAX_IMAGES", 100_000), sum(len(f) for cl in out.values() for _, f in cl)
    if n > limit:
        raise DataError(f"folder: {short(path)} holds more than {num(limit)} images, the limit (KD_MAX_IMAGES)")
    return out


def _folder_notes(path: Path, listing: Listing) -> tuple[str, ...]:
    """Where each split came from, for a folder with train/ (val/, test/) sub-folders."""
    if "all" in listing:
        return ()
    dirs = _split_folders(path)
    said = [f"{k}: {dirs[k].name}/ ({sum(len(f) for _, f in listing[k]):,} images)" for k in listing]
    if "test" not in listing:
        said.append("no test/ folder: a stratified 20 % of train/ was made with a fixed seed")
    if "val" not in listing:
        said.append("no val/ folder: the validation share is carved from train/")
    return tuple(said)


def _folder_spec(path: Path, size: int, listing: Listing) -> DataSpec:
    """The spec of a listed folder, refused when it would not fit KD_MAX_DATA_MB decoded."""
    n = sum(len(f) for classes in listing.values() for _, f in classes)
    _check_memory(n, size)
    classes = next(iter(listing.values()))
    splits = "" if "all" in listing else " in " + ", ".join(f"{k}/" for k in listing)
    return DataSpec(
        f"{FOLDER}{path}",
        (3, size, size),
        len(classes),
        tuple(c for c, _ in classes),
        f"your images in {path}: {n:,} images{splits}, {len(classes)} classes, resized to {size}x{size}",
        _folder_notes(path, listing),
    )


def _pixels(im, size: int) -> np.ndarray:
    """One image as float32 (3, S, S), or (1, S, S) for grey, in [0, 1]. 16-bit and 32-bit images
    are scaled to [0, 1] and resized in float: convert("RGB") would clip them (most pixels white)."""
    from PIL import Image

    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        a = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(a.max()) if a.size else 0.0
        if im.mode == "F" and top <= 1.0:
            scale = 1.0  # float images already in [0, 1]
        else:  # 16-bit modes, and I / F holding 16-bit values; wider ranges by their own maximum
            scale = 65535.0 if im.mode.startswith("I;16") or top <= 65535 else top
        a = np.asarray(Image.fromarray(a / scale, "F").resize((size, size), Image.BILINEAR))
        return np.clip(a, 0.0, 1.0)[None]  # (1, S, S): grey, repeated over the 3 channels when stored
    im.draft("RGB", (size, size))  # JPEG: decode at reduced scale, much faster for photos
    a = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8)
    return a.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)  # (S, S, 3) -> (3, S, S)


def _folder_fetch(path: Path, size: int, listing: Listing) -> tuple[Tensor, ...]:
    """x_trainval, y_trainval, x_test, y_test, x_val, y_val (the last two None without val/)."""
    rows: dict[str, list[tuple[Path, int]]] = {"train": [], "val": [], "test": []}  # split -> [(file, label)]
    if "test" not in listing:  # the test split: a stratified 20 % of train (or of all the images)
        g = torch.Generator().manual_seed(TEST_SEED)
        for label, (_, files) in enumerate(listing.get("all") or listing["train"]):
            # at least 1 test and 1 train image per class (tiny classes still work)
            n_test = min(max(1, round(0.2 * len(files))), len(files) - 1)
            test_idx = set(torch.randperm(len(files), generator=g)[:n_test].tolist())
            for i, f in enumerate(files):
                rows["test" if i in test_idx else "train"].append((f, label))
    for split in ("train", "val", "test") if "test" in listing else ("val",):
        for label, (_, files) in enumerate(listing.get(split, [])):
            rows[split] += [(f, label) for f in files]
    x_tv, y_tv = _decode(rows["train"], size)
    x_te, y_te = _decode(rows["test"], size)
    x_va, y_va = _decode(rows["val"], size) if "val" in listing else (None, None)
    return x_tv, y_tv, x_te, y_te, x_va, y_va


def _decode(rows: list[tuple[Path, int]], size: int) -> tuple[Tensor, Tensor]:
    from PIL import Image

    x = torch.empty(len(rows), 3, size, size)  # filled in place: one float copy, no list of images
    for i, (f, _) in enumerate(rows):
        try:
            with Image.open(f) as im:
                x[i] = torch.from_numpy(_pixels(im, size))
        except Exception as e:  # PIL raises many types (OSError, SyntaxError, DecompressionBombError...)
            raise DataError(f"folder: cannot read image {short(f)} ({type(e).__name__}: {reason(e, f)})") from None
    return x, torch.tensor([label for _, label in rows], dtype=torch.int64)


# -- public API ----------------------------------------------------------------------------
def resolve_data_dir(data_dir: str | None) -> Path:
    """data_dir, else $KD_DATA_DIR, else ~/.cache/distill-lab/data (absolute; not created here)."""
    chosen = data_dir or os.environ.get("KD_DATA_DIR") or Path.home() / ".cache" / "distill-lab" / "data"
    return Path(chosen).expanduser().resolve()


def _check_image_size(image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 8 <= image_size <= 256:
        raise ConfigError("image_size", f"must be a whole number from 8 to 256, got {image_size!r}")


def _source(name: str) -> Source:
    try:
        return DATASETS.get(name)
    except UnknownKeyError as e:
        e.args = (e.args[0] + ", or folder:PATH (one sub-folder of images per class)",)
        raise


def _folder_path(name: str) -> Path:
    raw = name[len(FOLDER) :].strip()
    if not raw:
        raise DataError("folder: needs a path, e.g. folder:/data/my_images")
    try:
        return Path(raw).expanduser().resolve()
    except ValueError as e:  # an embedded NUL byte
        raise DataError(f"folder: {short(raw)!r} is not a valid path ({reason(e)})") from None
    except (OSError, RuntimeError) as e:  # a symlink loop (RuntimeError before Python 3.13), an unknown ~user
        raise DataError(f"folder: cannot resolve {short(raw)} ({reason(e, raw)})") from None


def spec(
    name: str, data_dir: str | None = None, image_size: int = 32, label: str = "", fill_missing: str = "none"
) -> DataSpec:
    """The data set's shape and classes without loading it (a folder is listed, not decoded; a
    table or npz file is read, once per version of the file)."""
    _check_image_size(image_size)
    if owndata.is_own(name):
        a = owndata.read(name, label, fill_missing)
        return DataSpec(name, a.input_shape, len(a.class_names), a.class_names, a.description, tuple(a.notes))
    if isinstance(name, str) and name.startswith(FOLDER):
        path = _folder_path(name)
        return _folder_spec(path, image_size, _folder_listing(path))
    return _source(name).spec


def load(
    name: str,
    data_dir: str | None = None,
    val_fraction: float = 0.1,
    image_size: int = 32,
    label: str = "",
    fill_missing: str = "none",
) -> DataBundle:
    """Load once per process (same arguments -> same DataBundle object); CPU tensors."""
    _check_image_size(image_size)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction <= 0.5:
        raise ConfigError("val_fraction", f"must be a number from 0 to 0.5, got {val_fraction!r}")
    if owndata.is_own(name):
        return _load_own(name, owndata.read(name, label, fill_missing), float(val_fraction))
    # normalise the cache key so arguments a set ignores do not cause a second copy
    if isinstance(name, str) and name.startswith(FOLDER):
        return _load(FOLDER, str(_folder_path(name)), float(val_fraction), image_size)
    src = _source(name)
    root = str(resolve_data_dir(data_dir)) if src.needs_dir else None
    return _load(name, root, float(val_fraction), 0)


@functools.lru_cache(maxsize=8)
def _load(name: str, root: str | None, val_fraction: float, image_size: int) -> DataBundle:
    if name == FOLDER:
        path = Path(root)  # type: ignore[arg-type]
        listing = _folder_listing(path)
        sp, tensors = _folder_spec(path, image_size, listing), _folder_fetch(path, image_size, listing)
        return _bundle(sp, *tensors[:4], val_fraction, *tensors[4:])
    else:
        src = DATASETS.get(name)
        sp, (x_tv, y_tv, x_te, y_te) = src.spec, src.fetch(Path(root) if root else None)
    return _bundle(sp, x_tv, y_tv, x_te, y_te, val_fraction)


@functools.lru_cache(maxsize=4)
def _load_own(name: str, a: owndata.Arrays, val_fraction: float) -> DataBundle:
    """A table or npz file's arrays as a DataBundle (its own val split where it has one)."""
    t = lambda v: None if v is None else torch.from_numpy(v)  # noqa: E731
    sp = DataSpec(name, a.input_shape, len(a.class_names), a.class_names, a.description, tuple(a.notes))
    return _bundle(sp, t(a.x_tv), t(a.y_tv), t(a.x_test), t(a.y_test), val_fraction, t(a.x_val), t(a.y_val))


def _bundle(
    sp: DataSpec,
    x_tv: Tensor,
    y_tv: Tensor,
    x_te: Tensor,
    y_te: Tensor,
    val_fraction: float,
    x_va: Tensor | None = None,
    y_va: Tensor | None = None,
) -> DataBundle:
    """Carve val out of train+val (unless the data came with its own val split) and normalise
    every split with the training rows' statistics."""
    if x_va is not None:
        x_tr, y_tr, x_va, y_va = x_tv.clone(), y_tv, x_va.clone(), y_va
    else:  # carve val with a private generator: torch.manual_seed elsewhere cannot move it
        n = len(y_tv)
        n_val = min(int(round(n * val_fraction)), n - 1)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(VAL_SEED))
        val_idx, tr_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
        x_tr, y_tr, x_va, y_va = x_tv[tr_idx], y_tv[tr_idx], x_tv[val_idx], y_tv[val_idx]
    x_te = x_te.clone()  # normalised in place below: never the caller's array

    # per channel (N, C, H, W) or per feature (N, 2): reduce over every dim except 1
    dims = tuple(d for d in range(x_tr.dim()) if d != 1)
    std, mean = torch.std_mean(x_tr, dim=dims, correction=0)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # a constant channel stays as is
    view = (1, -1) + (1,) * (x_tr.dim() - 2)
    norm = lambda x: x.sub_(mean.view(view)).div_(std.view(view))  # in place: fresh tensors  # noqa: E731
    return DataBundle(
        sp, norm(x_tr), y_tr, norm(x_va), y_va, norm(x_te), y_te, tuple(mean.tolist()), tuple(std.tolist())
    )


def folder_summary(name: str, per_class: int = 1) -> dict:
    """What a folder:PATH holds, listed, not decoded (as owndata.summary for files): the images of
    each class in each split, where the splits came from, and `per_class` image files a class."""
    path = _folder_path(name)
    listing = _folder_listing(path)
    classes = [c for c, _ in next(iter(listing.values()))]
    counts = {("images" if k == "all" else k): [len(f) for _, f in cl] for k, cl in listing.items()}
    notes = list(_folder_notes(path, listing))
    if "all" in listing:
        notes.append("a stratified 20 % of each class becomes the test split; validation is carved from the rest")
    first = listing.get("train") or listing["all"]
    return {
        "layout": "image",
        "class_names": classes,
        "counts": counts,
        "notes": notes,
        "files": [(c, f[:per_class]) for c, f in first],
    }


def _clear() -> None:
    _load.cache_clear()
    _load_own.cache_clear()


load.cache_clear = _clear  # type: ignore[attr-defined]


def spec_for(cfg) -> DataSpec:
    """spec() of a run's config (a RunConfig or its dict)."""
    dataset, data_dir, _, image_size, label, fill_missing = _data_args(cfg)
    return spec(dataset, data_dir, image_size, label, fill_missing)


def load_for(cfg) -> DataBundle:
    """load() of a run's config (a RunConfig or its dict)."""
    return load(*_data_args(cfg))


def _data_args(cfg) -> tuple:
    get = cfg.get if isinstance(cfg, dict) else lambda k, d=None: getattr(cfg, k, d)
    return (
        get("dataset"),
        get("data_dir"),
        get("val_fraction", 0.1),
        get("image_size", 32),
        get("label", "") or "",
        get("fill_missing", "none") or "none",
    )


def stratified_subset(y: Tensor, fraction: float) -> Tensor:
    """Sorted indices of `fraction` of the examples of each class (rounded, at least one), drawn
    with SUBSET_SEED: the run's seed moves the students' init and batch order, not their data."""
    g = torch.Generator().manual_seed(SUBSET_SEED)
    labels = y.cpu()
    keep = []
    for c in torch.unique(labels).tolist():
        idx = (labels == c).nonzero().flatten()
        keep.append(idx[torch.randperm(len(idx), generator=g)[: max(1, round(fraction * len(idx)))]])
    return torch.cat(keep).sort().values.to(y.device)


def grid(bundle: DataBundle, n: int = 200, margin: float = 0.1) -> tuple[Tensor, Tensor, Tensor]:
    """A grid in normalised space covering all splits (plus margin) for decision plots.

    xx, yy: (n, n), row i is y = yy[i, 0], column j is x = xx[0, j] (meshgrid "xy"), so
    predictions on points (n*n, 2) reshape to (n, n) for a contour/heatmap; bundle.raw(points)
    gives the original coordinates.
    """
    if bundle.spec.input_shape != (2,):
        raise ValueError(f"grid() is for 2-D data sets, not {bundle.spec.name} {bundle.spec.input_shape}")
    pts = torch.cat([bundle.x_train, bundle.x_val, bundle.x_test])
    lo, hi = pts.min(0).values, pts.max(0).values
    pad = (hi - lo) * margin
    xs = torch.linspace(float(lo[0] - pad[0]), float(hi[0] + pad[0]), n)
    ys = torch.linspace(float(lo[1] - pad[1]), float(hi[1] + pad[1]), n)
    xx, yy = torch.meshgrid(xs, ys, indexing="xy")
    return xx, yy, torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Shift each image (N, C, H, W) by its own whole-pixel offset in [-max_shift, max_shift]
    (edges repeat), on x's device; offsets come from a CPU generator so runs are repeatable."""
    n, _, h, w = x.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator).to(x.device, x.dtype)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = shifts[:, 0] * 2 / w  # affine_grid works in [-1, 1]: one pixel is 2 / size
    theta[:, 1, 2] = shifts[:, 1] * 2 / h
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="nearest", padding_mode="border", align_corners=False)
