"""A person's own files as data sets: `table:PATH` (.csv, .parquet) and `npz:PATH` (NumPy).

Both end as the arrays kd/data.py turns into a DataBundle: inputs (N, *shape) float32 and labels
(N,) int64 for train+val and for test, and a val split where the file has one. What was read and
how (the label column, one-hot columns, which split came from where) is said in `notes`, which
the CLI prints and the Train page shows.

A table: the label column is `label` (`--label COL`), else "label" when there is one, else the
last column. Numeric columns are kept as they are (kd/data.py standardises every input column
with the training split's statistics); text, category and true/false columns are one-hot
encoded, refused past MAX_CATEGORIES values. Missing values are refused, naming the column and
how many, unless `fill_missing` is "mean" (numeric columns: the mean of the rows that are not
test; text: a value of its own) or "zero".

An npz: arrays `x`, `y` and optionally `x_val`, `y_val`, `x_test`, `y_test`. x's shape says what
it holds: (N, F) a table, (N, C, L) 1-D signals, (N, C, H, W) images; (N, H, W) grey images when
H == W, else signals (N, C, L). An array `layout` ("table", "signal" or "image") in the archive
says it instead: an (N, L) array with layout "signal" is N signals of length L.

Labels may be numbers or text; the classes are their sorted distinct values. Where a file has no
test split, a stratified 20 % is made with TEST_SEED (kd/data.py's test splits use it too); a class with fewer than 2
examples cannot be split and is refused, named. Every refusal is one DataError naming the file.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kd.errors import DataError
from kd.limits import env_limit, human_bytes, num, reason, short

TABLE = "table:"
NPZ = "npz:"
PREFIXES = (TABLE, NPZ)
OWN = ("folder:", TABLE, NPZ)  # every kind of a person's own data set name
FILE_KINDS = {".csv": TABLE, ".parquet": TABLE, ".pq": TABLE, ".npz": NPZ}  # a file's suffix -> its kind
TABLE_EXTENSIONS = tuple(k for k, v in FILE_KINDS.items() if v == TABLE)
MAX_CATEGORIES = 50  # distinct values a text column may have to be one-hot encoded
FILL = ("none", "mean", "zero")
LAYOUTS = ("table", "signal", "image")
TEST_SHARE = 0.2
TEST_SEED = 0  # the fixed test splits, here and in kd/data.py: a run's seed never moves them


@dataclass(eq=False)  # hashed by identity: kd/data.py caches the bundle made from it
class Arrays:
    """What a file holds, ready for kd/data.py: x (N, *shape) float32, y (N,) int64 in 0..K-1."""

    input_shape: tuple[int, ...]
    class_names: tuple[str, ...]
    x_tv: np.ndarray
    y_tv: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None = None  # the file's own val split, used instead of carving one
    y_val: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    kind: str = "table"  # table, signal or image

    @property
    def description(self) -> str:
        n = len(self.y_tv) + len(self.y_test) + (0 if self.y_val is None else len(self.y_val))
        what = {"table": "rows", "signal": "signals", "image": "images"}[self.kind]
        shape = "x".join(str(s) for s in self.input_shape)
        return f"{n:,} {what} of shape {shape}, {len(self.class_names)} classes"


def is_own(name: object) -> bool:
    return isinstance(name, str) and name.startswith(PREFIXES)


def path_of(name: str) -> Path:
    prefix = next(p for p in PREFIXES if name.startswith(p))
    raw = name[len(prefix) :].strip()
    if not raw:
        raise DataError(
            f"{prefix} needs a path, e.g. {prefix}/data/my_{'table.csv' if prefix == TABLE else 'arrays.npz'}"
        )
    try:
        return Path(raw).expanduser().resolve()
    except (ValueError, OSError, RuntimeError) as e:
        raise DataError(f"{prefix} {short(raw)!r} is not a usable path ({reason(e)})") from None


def read(name: str, label: str = "", fill_missing: str = "none") -> Arrays:
    """The file named by `table:PATH` or `npz:PATH`, read once per version of the file."""
    path = path_of(name)
    try:
        st = path.stat()
    except OSError as e:
        raise DataError(f"{short(path)}: cannot be read ({reason(e, path)})") from None
    if not path.is_file():
        raise DataError(f"{short(path)} is not a file")
    if st.st_size == 0:
        raise DataError(f"{short(path)} is empty")
    return _read(name.startswith(TABLE), str(path), st.st_mtime_ns, st.st_size, label or "", fill_missing or "none")


@functools.lru_cache(maxsize=2)  # a page choosing a label column re-reads; two copies at most
def _read(table: bool, path: str, _mtime: int, size: int, label: str, fill_missing: str) -> Arrays:
    limit = env_limit("KD_MAX_DATA_MB", 4096)
    if size * 2 > limit * 1e6:  # read, then converted once: about twice the file in memory
        raise DataError(
            f"{short(path)} is {human_bytes(size)}, over half the {num(limit)} MB limit for data in memory "
            "(KD_MAX_DATA_MB); use a smaller file or raise the limit"
        )
    if fill_missing not in FILL:
        raise DataError(f"fill_missing must be one of {', '.join(FILL)}, got {fill_missing!r}")
    out = _table(Path(path), label, fill_missing) if table else _npz(Path(path))
    need = sum(a.nbytes for a in (out.x_tv, out.x_test, out.x_val) if a is not None) * 2
    if need > limit * 1e6:
        raise DataError(
            f"{short(path)}: its inputs take about {human_bytes(need)} in memory as float32, over the "
            f"{num(limit)} MB limit (KD_MAX_DATA_MB)"
        )
    return out


# -- labels and splits --------------------------------------------------------------------------
def _classes(values: np.ndarray, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels as 0..K-1 and the class names, sorted: numbers (and text that reads as numbers:
    "2" before "10") by value, other text as text."""
    if values.dtype.kind == "S":  # bytes, as h5py and older NumPy code keep text
        values = np.char.decode(values, "utf-8", "replace")
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise DataError(f"{where}: {int(np.isnan(values).sum()):,} label(s) are missing (NaN)")
    if values.dtype.kind in "OU":
        text = values.astype(str)
        try:
            numbers = text.astype(np.float64)
        except ValueError:
            numbers = None
        if numbers is not None and np.isfinite(numbers).all():
            names, first = np.unique(numbers, return_index=True)  # one name per value, as first written
            return np.searchsorted(names, numbers).astype(np.int64), _two_or_more(tuple(text[first]), where)
        values = text
    names = np.unique(values)
    return np.searchsorted(names, values).astype(np.int64), _two_or_more(tuple(_label_text(v) for v in names), where)


def _two_or_more(names: tuple[str, ...], where: str) -> tuple[str, ...]:
    if len(names) < 2:
        raise DataError(f"{where}: every example has the label {names[0] if names else '?'!r}; need at least 2 classes")
    return names


def _label_text(v) -> str:
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _test_split(x: np.ndarray, y: np.ndarray, names: tuple[str, ...], where: str) -> tuple[np.ndarray, ...]:
    """A stratified test split of TEST_SHARE, fixed seed; a class with fewer than 2 examples refused."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y, minlength=len(names))
    small = [names[i] for i, c in enumerate(counts) if c < 2]
    if small:
        raise DataError(
            f"{where}: class {small[0]!r} has {counts[names.index(small[0])]} example(s); each class needs at "
            "least 2 to be split into train and test (give it more examples or a test split of its own; "
            "or is this the right label column?)"
        )
    n_test = max(len(names), int(round(TEST_SHARE * len(y))))
    if len(y) - n_test < len(names):
        raise DataError(f"{where}: {len(y)} examples are too few to split into train and test for {len(names)} classes")
    x_tv, x_te, y_tv, y_te = train_test_split(x, y, test_size=n_test, random_state=TEST_SEED, stratify=y)
    return x_tv, y_tv, x_te, y_te


# -- tables -------------------------------------------------------------------------------------
def _separator(path: Path) -> str:
    """A CSV's separator, from its first lines: ",", ";" (spreadsheets in many locales), tab or "|"."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            head = f.read(65536)
        return csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
    except (OSError, csv.Error):
        return ","


INDEX_COLUMN = "Unnamed: 0"  # what pandas names the row numbers that df.to_csv() writes by default


def _frame(path: Path, nrows: int | None = None):
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in TABLE_EXTENSIONS:
        raise DataError(
            f"{short(path)}: a table must be {', '.join(TABLE_EXTENSIONS)}, not {suffix or 'a file without one'}"
        )
    try:
        df = pd.read_csv(path, sep=_separator(path), nrows=nrows) if suffix == ".csv" else pd.read_parquet(path)
    except Exception as e:  # a damaged file, a wrong encoding, pyarrow's errors...
        raise DataError(
            f"{short(path)}: cannot be read as {suffix[1:]} ({type(e).__name__}: {reason(e, path)})"
        ) from None
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise DataError(f"{short(path)} has no rows" if df.shape[1] else f"{short(path)} has no columns")
    df.columns = [str(c) for c in df.columns]
    first = df.columns[0]
    if first == INDEX_COLUMN and df[first].equals(pd.Series(range(len(df)), index=df.index)):
        df = df.drop(columns=[first])  # row numbers, not a measurement: they would give away a sorted label
        df.attrs["dropped"] = first
    return df


def _table(path: Path, label: str, fill: str) -> Arrays:
    import pandas as pd

    df = _frame(path)
    where = short(path.name)
    if label:
        if label not in df.columns:
            raise DataError(
                f"{where}: no column {label!r} for the label; its columns: {', '.join(map(repr, df.columns[:20]))}"
            )
        how = f"label column {label!r}"
    elif "label" in df.columns:
        label, how = "label", "label column 'label'"
    else:
        label, how = df.columns[-1], f"label column {df.columns[-1]!r} (the last; --label names another)"
    if df.shape[1] < 2:
        raise DataError(f"{where}: only the label column {label!r}; need at least one input column")
    y_col = df[label]
    if y_col.isna().any():
        raise DataError(f"{where}: the label column {label!r} is missing in {int(y_col.isna().sum()):,} row(s)")
    distinct = y_col.nunique()
    if distinct > MAX_CATEGORIES and distinct > len(y_col) // 2:
        raise DataError(
            f"{where}: the {how} has {distinct:,} distinct values in {len(y_col):,} rows, more like an "
            "identifier or a measurement than a class; name the label column with --label"
        )
    y, names = _classes(y_col.to_numpy(), where)
    feats = df.drop(columns=[label])
    numeric = [
        c for c in feats.columns if pd.api.types.is_numeric_dtype(feats[c]) and not pd.api.types.is_bool_dtype(feats[c])
    ]
    encoded = [c for c in feats.columns if c not in numeric]
    missing = {c: int(n) for c, n in feats.isna().sum().items() if n}
    if missing and fill == "none":
        c, n = next(iter(missing.items()))
        more = f" (and {len(missing) - 1} more column(s))" if len(missing) > 1 else ""
        raise DataError(
            f"{where}: column {c!r} is missing in {n:,} row(s){more}; fill them (Missing values: mean or zero; "
            "--fill-missing on the command line) or remove those rows"
        )
    for c in encoded:
        values = feats[c].dropna().unique()
        if len(values) > MAX_CATEGORIES:
            raise DataError(
                f"{where}: column {c!r} holds {len(values):,} distinct text values, over {MAX_CATEGORIES} "
                "to one-hot encode; drop it, or turn it into numbers"
            )
    # the test split first: means for filling come from the rows that are not test
    idx = np.arange(len(y))
    tv, _, te, _ = _test_split(idx, y, names, where)
    columns = []
    for c in numeric:
        v = feats[c].to_numpy(dtype=np.float64, na_value=np.nan)
        if missing.get(c):
            v = np.where(np.isnan(v), np.nanmean(v[tv]) if fill == "mean" and not np.isnan(v[tv]).all() else 0.0, v)
        if not np.isfinite(v).all():
            raise DataError(f"{where}: column {c!r} holds an infinite value")
        columns.append(v[:, None])
    for c in encoded:
        col = feats[c].astype("string").fillna("(missing)")
        values = sorted(col.unique())
        columns.append((col.to_numpy()[:, None] == np.array(values)[None, :]).astype(np.float64))
    x = np.concatenate(columns, axis=1).astype(np.float32)
    notes = [f"{how}; {len(numeric)} numeric column(s), standardised with the training split's statistics"]
    if df.attrs.get("dropped"):
        notes.append(f"column {df.attrs['dropped']!r} holds the row numbers 0, 1, 2...: left out")
    if encoded:
        notes.append(f"one-hot: {', '.join(f'{c} ({feats[c].nunique()} values)' for c in encoded)}")
    if missing:
        notes.append(
            f"missing values filled with {'the mean' if fill == 'mean' else 'zero'}: "
            + ", ".join(f"{c} ({n})" for c, n in missing.items())
        )
    notes.append(
        f"no test split in the file: a stratified {TEST_SHARE:.0%} ({len(te):,} rows) was made with a fixed seed"
    )
    return Arrays((x.shape[1],), names, x[tv], y[tv], x[te], y[te], notes=notes, kind="table")


# -- npz ----------------------------------------------------------------------------------------
SPLITS = (("x", "y"), ("x_val", "y_val"), ("x_test", "y_test"))


def _npz(path: Path) -> Arrays:
    where = short(path.name)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # not a zip, a pickled object array, a damaged member
        raise DataError(
            f"{where}: cannot be read as a NumPy .npz archive ({type(e).__name__}: {reason(e, path)})"
        ) from None
    for k in ("x", "y"):
        if k not in arrays:
            held = ", ".join(map(repr, list(arrays)[:10])) or "nothing"
            raise DataError(
                f"{where}: no array {k!r} (it holds {held}); an npz data set holds x and y (and optionally "
                "x_val, y_val, x_test, y_test)"
            )
    for xk, yk in SPLITS:
        if (xk in arrays) != (yk in arrays):
            have, lack = (xk, yk) if xk in arrays else (yk, xk)
            raise DataError(f"{where}: has {have!r} but no {lack!r}")
    layout = str(arrays["layout"]) if "layout" in arrays else None
    if layout is not None and layout not in LAYOUTS:
        raise DataError(f"{where}: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    x0 = arrays["x"]
    for xk, yk in SPLITS:
        if xk not in arrays:
            continue
        x, y = arrays[xk], arrays[yk]
        if x.dtype.kind not in "biuf":
            raise DataError(f"{where}: {xk!r} holds {x.dtype} values; inputs must be numbers")
        if y.ndim != 1:
            hint = f" (one-hot? store {yk}.argmax(1))" if y.ndim == 2 else ""
            raise DataError(f"{where}: {yk!r} has shape {y.shape}; labels are one per example, shape (N,){hint}")
        if len(x) != len(y):
            raise DataError(f"{where}: {xk!r} has {len(x):,} examples but {yk!r} has {len(y):,} labels")
        if x.shape[1:] != x0.shape[1:]:
            raise DataError(f"{where}: {xk!r} has examples of shape {x.shape[1:]}, 'x' of shape {x0.shape[1:]}")
        if len(x) == 0:
            raise DataError(f"{where}: {xk!r} is empty")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise DataError(f"{where}: {xk!r} holds NaN or infinite values")
        if y.dtype.kind == "f" and np.isnan(y).any():
            raise DataError(f"{where}: {yk!r} is missing {int(np.isnan(y).sum()):,} label(s) (NaN)")
        if y.dtype.kind not in "biuUS" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
            raise DataError(f"{where}: {yk!r} holds {y.dtype} values; labels must be whole numbers or text")
    kind, shape, last = _layout(x0.shape, layout, where)
    ys = [arrays[yk] for _, yk in SPLITS if yk in arrays]
    all_y, names = _classes(np.concatenate(ys), where)
    held, at = {}, 0  # each split's labels, as coded
    for _, yk in SPLITS:
        if yk in arrays:
            held[yk], at = set(all_y[at : at + len(arrays[yk])].tolist()), at + len(arrays[yk])
    for i, name in enumerate(names):  # a class the models never train on caps accuracy unseen
        if i not in held["y"]:
            holder = next(yk for yk, labels in held.items() if i in labels)
            raise DataError(
                f"{where}: class {name!r} is in {holder!r} but not in 'y'; every class needs training examples"
            )
    scale = _scale(x0) if kind == "image" else 1.0  # one scale for every split: x's
    coded, at = {}, 0
    for xk, yk in SPLITS:
        if yk in arrays:
            coded[xk] = (_inputs(arrays[xk], shape, last, scale), all_y[at : at + len(arrays[yk])])
            at += len(arrays[yk])
    read_as = f"x {tuple(x0.shape)} read as {kind}s of shape {'x'.join(map(str, shape))}"
    if last:
        read_as += " (channels last in the file, moved first)"
    if layout is None and (x0.ndim == 2 or x0.ndim == 3):  # could be read another way
        other = {"table": "signal", "image": "signal", "signal": "image"}[kind]
        read_as += f" (an array layout={other!r} in the archive reads it as {other}s)"
    if kind == "image" and scale != 1.0:
        read_as += f"; pixels divided by {scale:g}"
    notes = [read_as]
    x_tv, y_tv = coded["x"]
    if "x_test" in coded:
        x_te, y_te = coded["x_test"]
        notes.append(f"test: x_test ({len(y_te):,})")
    else:
        x_tv, y_tv, x_te, y_te = _test_split(x_tv, y_tv, names, where)
        notes.append(
            f"no x_test in the archive: a stratified {TEST_SHARE:.0%} of x ({len(y_te):,}) was made with a fixed seed"
        )
    x_va, y_va = coded.get("x_val", (None, None))
    if x_va is not None:
        notes.append(f"validation: x_val ({len(y_va):,}), instead of a share of x")
    return Arrays(shape, names, x_tv, y_tv, x_te, y_te, x_va, y_va, notes=notes, kind=kind)


def _layout(shape: tuple[int, ...], layout: str | None, where: str) -> tuple[str, tuple[int, ...], bool]:
    """What x of `shape` (N first) holds, one example's shape as the models take it, and whether
    its channels come last in the file: (N, H, W, C) images with C of 1, 3 or 4 (as Keras and
    PIL keep them) and (N, L, C) signals with a few channels after a longer axis are moved first."""
    per = tuple(int(s) for s in shape[1:])
    square = len(per) == 2 and per[0] == per[1]
    kind = layout or {1: "table", 2: "image" if square else "signal", 3: "image"}.get(len(per))
    if kind is None or min(per, default=0) < 1:
        raise DataError(f"{where}: x has shape {tuple(shape)}; expected (N, F), (N, C, L), (N, H, W) or (N, C, H, W)")
    if kind == "table":
        if len(per) != 1:
            raise DataError(f"{where}: layout 'table' needs x of shape (N, F), got {tuple(shape)}")
        return kind, per, False
    if kind == "signal":
        if len(per) not in (1, 2):
            raise DataError(f"{where}: layout 'signal' needs x of shape (N, L) or (N, C, L), got {tuple(shape)}")
        if len(per) == 1:
            return kind, (1, *per), False
        last = per[1] <= 16 < per[0]  # (N, 500, 3): 3 channels of 500 samples, not 500 of 3
        return kind, (per[1], per[0]) if last else per, last
    if len(per) not in (2, 3):
        raise DataError(f"{where}: layout 'image' needs x of shape (N, H, W) or (N, C, H, W), got {tuple(shape)}")
    if len(per) == 2:
        return kind, (1, *per), False
    last = per[2] in (1, 3, 4) and per[0] not in (1, 3, 4)
    return kind, (per[2], per[0], per[1]) if last else per, last


def _scale(x: np.ndarray) -> float:
    """What x's pixels are divided by to lie in [0, 1]: 255 for 8 bits, 65,535 for 16, else the
    largest absolute value when it is over 1 (one scale for every split, taken from x)."""
    if x.dtype == np.uint8:
        return 255.0
    if x.dtype == np.uint16:
        return 65535.0
    top = float(np.abs(x).max()) if x.size else 0.0
    return top if top > 1.0 else 1.0


def _inputs(x: np.ndarray, shape: tuple[int, ...], last: bool, scale: float) -> np.ndarray:
    """float32 (N, *shape): channels moved first where they came last, divided by `scale`."""
    if last:
        x = np.moveaxis(x, -1, 1)
    out = x.reshape(len(x), *shape).astype(np.float32)
    return out / np.float32(scale) if scale != 1.0 else out


# -- what the Train page shows before training ----------------------------------------------------
def columns(name: str) -> list[str]:
    """A table file's column names, read from its header only."""
    path = path_of(name)
    try:
        if path.suffix.lower() == ".csv":
            import pandas as pd

            return [str(c) for c in pd.read_csv(path, sep=_separator(path), nrows=0).columns]
        import pyarrow.parquet as pq

        return [str(c) for c in pq.read_schema(path).names if not str(c).startswith("__index_level_")]
    except Exception as e:
        raise DataError(f"{short(path.name)}: cannot be read ({type(e).__name__}: {reason(e, path)})") from None


def summary(name: str, label: str = "", fill_missing: str = "none", per_class: int = 1) -> dict:
    """What a table or npz file holds, for a person to check before training: its kind, the
    examples of each class in each split, how it was read, and a preview (the table's first rows,
    or `per_class` signals or images of each class, as read)."""
    a = read(name, label, fill_missing)
    if a.y_val is None:  # val is carved from train + val when the run starts (its validation share)
        splits = {"train + val": a.y_tv, "test": a.y_test}
    else:
        splits = {"train": a.y_tv, "val": a.y_val, "test": a.y_test}
    counts = {k: np.bincount(y, minlength=len(a.class_names)).tolist() for k, y in splits.items()}
    out = {"layout": a.kind, "class_names": list(a.class_names), "counts": counts, "notes": list(a.notes)}
    if a.kind == "table":
        path = path_of(name)
        out["rows"] = _frame(path, nrows=5) if path.suffix.lower() == ".csv" else _frame(path).head(5)
    else:
        picks = [i for c in range(len(a.class_names)) for i in np.flatnonzero(a.y_tv == c)[:per_class]]
        out["examples"] = (a.x_tv[picks], a.y_tv[picks])
    return out
