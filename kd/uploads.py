"""Files a person hands the dashboard: a .zip of images (one folder per class) and a teacher's
.safetensors. Both are checked before anything uses them; nothing is unpickled, and no archive
member can be written outside its own folder."""
from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path, PurePosixPath

from kd.errors import ConfigError

MAX_MB = float(os.environ.get("KD_MAX_UPLOAD_MB", "200"))  # per file, and unpacked archive total


def _check_size(field: str, n_bytes: int) -> None:
    if n_bytes > MAX_MB * 1e6:
        raise ConfigError(field, f"{n_bytes / 1e6:.0f} MB is over the {MAX_MB:.0f} MB limit (KD_MAX_UPLOAD_MB)")


def save_image_zip(data: bytes, root: Path) -> Path:
    """Unpack a zip of class folders under root/<sha>/ and return the folder holding the classes.

    Members with absolute paths or '..' are refused, as is an archive that unpacks to more than
    MAX_MB. A zip whose content is one top-level folder is entered (common when zipping a folder).
    """
    _check_size("dataset", len(data))
    digest = hashlib.sha256(data).hexdigest()[:16]
    dest = root / "uploads" / digest
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ConfigError("dataset", "the uploaded file is not a .zip archive") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        _check_size("dataset", sum(m.file_size for m in members))
        for m in members:
            parts = PurePosixPath(m.filename.replace("\\", "/")).parts
            if m.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                raise ConfigError("dataset", f"archive member {m.filename!r} points outside its folder; refused")
        if not dest.exists():
            tmp = dest.with_name(dest.name + ".partial")
            for m in members:
                parts = PurePosixPath(m.filename.replace("\\", "/")).parts
                if parts[0] == "__MACOSX" or parts[-1].startswith("."):
                    continue
                target = tmp.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(m) as src, open(target, "wb") as out:
                    out.write(src.read())
            tmp.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
    entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and any(c.is_dir() for c in entries[0].iterdir()):
        return entries[0]
    return dest


def save_checkpoint(data: bytes, root: Path) -> Path:
    """Keep an uploaded .safetensors under root/uploads/<sha>.safetensors, after checking it is one."""
    from safetensors.torch import load as load_safetensors
    _check_size("teacher_checkpoint", len(data))
    try:
        load_safetensors(data)  # parses the header and tensors only; safetensors has no code path
    except Exception:
        raise ConfigError("teacher_checkpoint", "the uploaded file is not a safetensors file "
                          "(pickled .pt/.pth checkpoints are refused: they can run code)") from None
    path = root / "uploads" / f"{hashlib.sha256(data).hexdigest()[:16]}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return path
