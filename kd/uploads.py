"""Files a person hands the dashboard: a .zip of images (one folder per class) and a teacher's
.safetensors. Both are checked before anything uses them; nothing is unpickled, no archive
member can be written outside its own folder, and every failure is one ConfigError line.

Bounds, from the environment, read at each upload:
  KD_MAX_UPLOAD_MB   (200)      one uploaded file, and what one archive unpacks to
  KD_MAX_UPLOADS_MB  (2048)     everything kept under <runs root>/uploads/
  KD_MAX_IMAGES      (100000)   files in one archive
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import re
import shutil
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from kd.errors import ConfigError, DataError
from kd.limits import env_limit, human_bytes, num, reason, short
from kd.owndata import FILE_KINDS, OWN

CHUNK = 1 << 20  # bytes read from a member at a time: memory stays flat whatever its header says
MAX_DEPTH = 32  # folder levels in one member's path
MAX_NAME_BYTES = 255  # one part of a path, the usual file system limit
MAX_PATH_CHARS = 1000
COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
# what zipfile, its decompressors and the file system raise on a damaged, crafted or unwritable
# archive (UnicodeDecodeError is a ValueError, NotImplementedError a RuntimeError)
UNPACK_ERRORS = (
    OSError,
    EOFError,
    RuntimeError,
    ValueError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    struct.error,
)


def _limit(field: str, name: str, default: float) -> float:
    try:
        return env_limit(name, default)
    except DataError as e:
        raise ConfigError(field, str(e)) from None


def _check_size(field: str, n_bytes: int, limit_mb: float) -> None:
    if n_bytes > limit_mb * 1e6:
        raise ConfigError(field, f"{human_bytes(n_bytes)} is over the {num(limit_mb)} MB limit (KD_MAX_UPLOAD_MB)")


def _disk_used(folder: Path) -> int:
    """Bytes in the files under folder (0 if it does not exist; a file removed meanwhile counts 0)."""
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(parent, name)).st_size
            except OSError:
                pass
    return total


def _check_room(field: str, folder: Path, n_bytes: int, limit_mb: float) -> None:
    used = _disk_used(folder)
    if used + n_bytes > limit_mb * 1e6:
        raise ConfigError(
            field,
            f"{short(folder)} holds {human_bytes(used)} of uploads and this one takes "
            f"{human_bytes(n_bytes)}, over the {num(limit_mb)} MB limit for all uploads "
            "(KD_MAX_UPLOADS_MB); delete old uploads there or raise the limit",
        )


def _members(archive: zipfile.ZipFile, max_files: float) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """[(member, path parts)] of the files to unpack, after refusing anything that could escape the
    folder, nest absurdly, clash, or that zipfile cannot read; __MACOSX and dot-files are skipped."""
    kept = []
    for m in archive.infolist():
        if m.is_dir():
            continue
        name = m.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
            raise ConfigError("dataset", f"archive member {short(m.filename)!r} points outside its folder; refused")
        if parts and parts[0] != "__MACOSX" and not parts[-1].startswith("."):
            kept.append((m, parts))
    if len(kept) > max_files:
        raise ConfigError(
            "dataset",
            f"the archive holds {len(kept):,} files, over the limit of {num(max_files)} "
            "(KD_MAX_IMAGES); upload fewer images or raise the limit",
        )
    for m, parts in kept:
        label = repr(short(m.filename))
        longest = max(len(p.encode()) for p in parts)
        if len(m.filename) > MAX_PATH_CHARS:
            problem = f"is {len(m.filename):,} characters long, over {MAX_PATH_CHARS:,} characters"
        elif len(parts) > MAX_DEPTH:
            problem = f"is {len(parts)} levels deep, over {MAX_DEPTH}"
        elif longest > MAX_NAME_BYTES:
            problem = f"has a name part of {longest} bytes, over {MAX_NAME_BYTES} bytes"
        elif m.compress_type not in COMPRESSIONS:
            problem = (
                f"uses compression method {m.compress_type}, which is not supported "
                "(use stored, deflate, bzip2 or lzma)"
            )
        elif m.flag_bits & 0x1:
            problem = "is encrypted; upload an archive without a password"
        else:
            continue
        raise ConfigError("dataset", f"archive member {label} {problem}; refused")
    files = {parts for _, parts in kept}
    clash = sorted(files & {parts[:i] for parts in files for i in range(1, len(parts))})
    if clash:
        raise ConfigError(
            "dataset", f"{short('/'.join(clash[0]))!r} is both a file and a folder in the archive; refused"
        )
    return kept


def _unpack(archive: zipfile.ZipFile, m: zipfile.ZipInfo, target: Path) -> None:
    """Stream one member to target in chunks, stopping at its declared size: the declared sizes were
    checked against the limits, so no member (and no archive) can unpack to more."""
    written = 0
    with archive.open(m) as src, open(target, "wb") as out:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > m.file_size:
                raise ConfigError(
                    "dataset",
                    f"archive member {short(m.filename)!r} unpacks to more bytes than its "
                    f"header says ({m.file_size:,}); the archive is corrupt or crafted",
                )
            out.write(chunk)


def _unpack_all(archive: zipfile.ZipFile, members: list, folder: Path, dest: Path) -> None:
    """Unpack into a temporary folder of this upload's own inside folder (two uploads at once do
    not meet), rename it to dest when complete, and remove it whatever happens."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", suffix=".partial", dir=folder))
    except OSError as e:
        raise ConfigError("dataset", f"cannot unpack into {short(folder)} ({reason(e, folder)})") from None
    try:
        made: set[Path] = set()
        for m, parts in members:
            target = tmp.joinpath(*parts)
            try:
                if target.parent not in made:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    made.add(target.parent)
                _unpack(archive, m, target)
            except ConfigError:
                raise
            except OSError as e:
                if e.errno is None:  # bz2 and zipfile's own OSErrors: damaged data, not the disk
                    raise ConfigError(
                        "dataset", f"cannot unpack {short(m.filename)!r}: the archive is corrupt ({reason(e)})"
                    ) from None
                # the disk refused: full, read-only, permissions
                raise ConfigError(
                    "dataset", f"cannot write {short(m.filename)!r} into {short(folder)} ({reason(e, target)})"
                ) from None
            except UNPACK_ERRORS as e:  # bad CRC, damaged compressed data, ...
                raise ConfigError(
                    "dataset",
                    f"cannot unpack {short(m.filename)!r}: the archive is corrupt ({type(e).__name__}: {reason(e)})",
                ) from None
        try:
            os.replace(tmp, dest)
        except OSError as e:
            if not dest.is_dir():  # else the same archive, uploaded at the same time, is already in place
                raise ConfigError("dataset", f"cannot unpack into {short(folder)} ({reason(e, dest)})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_image_zip(data: bytes, root: Path, name: str | None = None) -> Path:
    """Unpack a zip of class folders under root/uploads/<sha>/ and return the folder holding the classes.
    `name`: the uploaded file's own name, kept beside it (root/uploads/<sha>.name) for
    original_name(), so the upload is named as its owner knows it.

    Every member is checked before anything is written; the archive is unpacked into a temporary
    folder of its own (removed whatever happens) and renamed into place when complete. A zip whose
    content is one top-level folder is entered (common when zipping a folder).
    """
    per_upload = _limit("dataset", "KD_MAX_UPLOAD_MB", 200)
    all_uploads = _limit("dataset", "KD_MAX_UPLOADS_MB", 2048)
    max_files = _limit("dataset", "KD_MAX_IMAGES", 100_000)
    _check_size("dataset", len(data), per_upload)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        detail = "" if str(e) == "File is not a zip file" else f" ({reason(e)})"
        raise ConfigError("dataset", f"the uploaded file is not a .zip archive{detail}") from None
    except UNPACK_ERRORS as e:
        raise ConfigError("dataset", f"cannot read the archive ({type(e).__name__}: {reason(e)})") from None
    folder = root / "uploads"
    dest = folder / hashlib.sha256(data).hexdigest()[:16]
    with archive:
        members = _members(archive, max_files)
        unpacked = sum(m.file_size for m, _ in members)
        if unpacked > per_upload * 1e6:
            raise ConfigError(
                "dataset",
                f"the archive unpacks to {human_bytes(unpacked)}, over the "
                f"{num(per_upload)} MB limit (KD_MAX_UPLOAD_MB)",
            )
        try:
            done = dest.exists()
        except OSError as e:
            raise ConfigError("dataset", f"cannot read {short(folder)} ({reason(e, folder)})") from None
        if not done:
            _check_room("dataset", folder, unpacked, all_uploads)
            _unpack_all(archive, members, folder, dest)
    if name:
        try:
            dest.with_name(dest.name + ".name").write_text(Path(name).name[:200])
        except OSError:
            pass  # a name is a nicety: the data set is there
    try:
        entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir() and any(c.is_dir() for c in entries[0].iterdir()):
            return entries[0]
    except OSError as e:
        raise ConfigError("dataset", f"cannot read {short(dest)} ({reason(e, dest)})") from None
    return dest


def save_data_file(data: bytes, root: Path, name: str) -> str:
    """Keep an uploaded table (.csv, .parquet) or NumPy archive (.npz) under
    root/uploads/<sha>/<its name, made safe>, and return the data set name to train on (table:PATH or
    npz:PATH). Nothing is kept for a file of another kind or over the limits."""
    field = "dataset"
    suffix = Path(name).suffix.lower()
    if suffix not in FILE_KINDS:
        raise ConfigError(field, f"{short(name)}: a data file must be {', '.join(FILE_KINDS)}, or a .zip of images")
    if not data:
        raise ConfigError(field, f"{short(name)} is empty")
    all_uploads = _limit(field, "KD_MAX_UPLOADS_MB", 2048)
    _check_size(field, len(data), _limit(field, "KD_MAX_UPLOAD_MB", 200))
    folder = root / "uploads"
    dest = folder / hashlib.sha256(data).hexdigest()[:16]
    stem = re.sub(r"[^\w.\- ]+", "_", Path(name).stem).strip(" .")[:100] or "data"
    path = dest / (stem + suffix)  # its own name, made safe: messages about it name it as its owner does
    tmp = None
    try:
        if not path.exists():
            _check_room(field, folder, len(data), all_uploads)
            dest.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".data-", suffix=".partial", dir=dest)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)  # complete or absent
        dest.with_name(dest.name + ".name").write_text(Path(name).name[:200])
    except OSError as e:
        raise ConfigError(field, f"cannot keep the uploaded file in {short(folder)} ({reason(e, folder)})") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return FILE_KINDS[suffix] + str(path)


def save_checkpoint(data: bytes, root: Path) -> Path:
    """Keep an uploaded .safetensors under root/uploads/<sha>.safetensors, after checking it is one."""
    from safetensors.torch import load as load_safetensors

    field = "teacher_checkpoint"
    all_uploads = _limit(field, "KD_MAX_UPLOADS_MB", 2048)
    _check_size(field, len(data), _limit(field, "KD_MAX_UPLOAD_MB", 200))
    try:
        load_safetensors(data)  # parses the header and tensors only; safetensors has no code path
    except Exception:
        raise ConfigError(
            field,
            "the uploaded file is not a safetensors file (pickled .pt/.pth checkpoints are refused: they can run code)",
        ) from None
    folder = root / "uploads"
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}.safetensors"
    tmp = None
    try:
        if path.exists():
            return path
        _check_room(field, folder, len(data), all_uploads)
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".partial", dir=folder)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)  # complete or absent: a full disk leaves no truncated checkpoint behind
    except OSError as e:
        raise ConfigError(field, f"cannot keep the uploaded file in {short(folder)} ({reason(e, folder)})") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def original_name(dataset: str) -> str | None:
    """The file name an uploaded data set (folder:.../uploads/<sha>[/<top>], table:.../uploads/<sha>/data.csv,
    npz:...) came in, or None."""
    path = Path(dataset.split(":", 1)[1] if dataset.startswith(OWN) else dataset)
    for folder in (path, path.parent):
        if folder.parent.name == "uploads":
            try:
                return folder.with_name(folder.name + ".name").read_text().strip() or None
            except OSError:
                return None
    return None
