"""Uploaded archives and checkpoints are checked before anything uses them."""

import io
import pickle
import zipfile

import pytest
import torch
from PIL import Image
from safetensors.torch import save

from kd import data, uploads
from kd.errors import ConfigError


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, content in files.items():
            z.writestr(name, content)
    return buf.getvalue()


def png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 10), color).save(buf, "PNG")
    return buf.getvalue()


def test_a_zip_of_class_folders_becomes_a_folder_data_set(tmp_path):
    files = {f"pets/{cls}/{i}.png": png(c) for cls, c in (("cat", "red"), ("dog", "blue")) for i in range(4)}
    folder = uploads.save_image_zip(zip_bytes(files), tmp_path)
    assert folder.name == "pets" and sorted(p.name for p in folder.iterdir()) == ["cat", "dog"]
    spec = data.spec("folder:" + str(folder), image_size=16)
    assert spec.num_classes == 2 and spec.input_shape == (3, 16, 16) and spec.class_names == ("cat", "dog")


@pytest.mark.parametrize("name", ["../evil.png", "a/../../evil.png", "/etc/evil.png", "C:/evil.png"])
def test_members_outside_the_folder_are_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="points outside its folder"):
        uploads.save_image_zip(zip_bytes({"ok/a.png": png("red"), name: b"x"}), tmp_path / "root")
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "root" / "uploads").exists()


def test_not_a_zip(tmp_path):
    with pytest.raises(ConfigError, match="dataset: the uploaded file is not a .zip archive"):
        uploads.save_image_zip(b"hello", tmp_path)


def test_size_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_MAX_UPLOAD_MB", "0.001")  # 1,000 bytes, read when the file comes
    with pytest.raises(ConfigError, match=r"0.002 MB is over the 0.001 MB limit \(KD_MAX_UPLOAD_MB\)"):
        uploads.save_checkpoint(b"x" * 2000, tmp_path)


def test_a_pickle_is_refused_and_never_run(tmp_path):
    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    with pytest.raises(ConfigError, match="not a safetensors file"):
        uploads.save_checkpoint(pickle.dumps(Boom()), tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_a_safetensors_checkpoint_is_kept(tmp_path):
    blob = save({"w": torch.ones(2, 2)})
    path = uploads.save_checkpoint(blob, tmp_path)
    assert path.suffix == ".safetensors" and path.read_bytes() == blob


# -- every broken or crafted archive is one clear message, and nothing is left behind ------------
def refused(blob: bytes, root, match: str) -> ConfigError:
    with pytest.raises(ConfigError, match=match) as e:
        uploads.save_image_zip(blob, root)
    assert e.value.field == "dataset" and "\n" not in e.value.message and len(e.value.message) < 400
    folder = root / "uploads"
    assert not folder.exists() or list(folder.iterdir()) == []
    return e.value


def patch_headers(blob: bytes, local: dict[int, bytes], central: dict[int, bytes]) -> bytes:
    """Overwrite fields of the first member's local header (at 0) and central directory entry."""
    out = bytearray(blob)
    at = blob.index(b"PK\x01\x02")
    for base, fields in ((0, local), (at, central)):
        for offset, value in fields.items():
            out[base + offset : base + offset + len(value)] = value
    return bytes(out)


def lying_zip(real_mb: int, declared: int) -> bytes:
    """One member whose header says `declared` bytes, while its deflated data unpacks to real_mb MB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("set/a/big.png", "w") as out:
            for _ in range(real_mb):
                out.write(bytes(1_000_000))
        z.writestr("set/b/1.png", png("blue"))
    size = declared.to_bytes(4, "little")
    return patch_headers(buf.getvalue(), {22: size}, {24: size})  # uncompressed size fields


def test_a_member_whose_header_lies_about_its_size_is_refused_in_bounded_memory(tmp_path):
    import tracemalloc

    blob = lying_zip(real_mb=40, declared=100)
    assert len(blob) < 100_000
    tracemalloc.start()
    try:
        e = refused(blob, tmp_path, "set/a/big.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000, peak  # streamed in chunks, never the whole member at once
    assert "corrupt" in e.message or "more bytes" in e.message


def test_broken_and_crafted_archives_are_refused(tmp_path):
    good = zip_bytes({"set/a/1.png": png("red"), "set/b/1.png": png("blue")})
    refused(good[: len(good) // 2], tmp_path, "not a .zip archive")
    refused(patch_headers(good, {14: b"\0\0\0\0"}, {16: b"\0\0\0\0"}), tmp_path, "CRC")
    refused(patch_headers(good, {8: b"\x06\0"}, {10: b"\x06\0"}), tmp_path, "compression method 6")
    refused(patch_headers(good, {6: b"\x01\0"}, {8: b"\x01\0"}), tmp_path, "encrypted")
    deflated = io.BytesIO()
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("set/a/1.png", bytes(range(256)) * 40)
        z.writestr("set/b/1.png", png("blue"))
    blob = bytearray(deflated.getvalue())
    blob[60:90] = b"\xff" * 30  # inside the first member's compressed data
    refused(bytes(blob), tmp_path, "set/a/1.png")
    for method in (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        packed = io.BytesIO()
        with zipfile.ZipFile(packed, "w", method) as z:
            z.writestr("set/a/1.png", bytes(range(256)) * 40)
            z.writestr("set/b/1.png", png("blue"))
        blob = bytearray(packed.getvalue())
        blob[50:80] = bytes(30)
        refused(bytes(blob), tmp_path, "'set/a/1.png': the archive is corrupt")
    named = zip_bytes({"set/a/é.png": png("red"), "set/b/1.png": png("blue")})
    bad_utf8 = named.replace("é".encode(), b"\xff\xfe")  # the UTF-8 flag is set: the names cannot be decoded
    refused(bad_utf8, tmp_path, "cannot read")


@pytest.mark.parametrize(
    "name,match",
    [
        ("/".join(["d"] * 40) + "/x.png", "41 levels deep, over 32"),
        ("set/a/" + "n" * 300 + ".png", "over 255 bytes"),
        ("/".join(["n" * 200] * 6) + ".png", "over 1,000 characters"),
    ],
)
def test_very_deep_or_long_member_names_are_refused_before_unpacking(tmp_path, name, match):
    refused(zip_bytes({"set/b/1.png": png("red"), name: png("blue")}), tmp_path, match)


def test_a_file_and_a_folder_at_the_same_path_are_refused(tmp_path):
    for files in (
        {"set/a/b": png("red"), "set/a/b/c.png": png("blue")},
        {"set/a/b/c.png": png("blue"), "set/a/b": png("red")},
    ):
        refused(zip_bytes(files), tmp_path, "'set/a/b' is both a file and a folder")


def test_an_unwritable_destination_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    e = refused(zip_bytes({"set/a/1.png": png("red"), "set/b/1.png": png("blue")}), tmp_path / "file", "cannot")
    assert str(tmp_path / "file") in e.message
    with pytest.raises(ConfigError, match="cannot keep") as e:
        uploads.save_checkpoint(save({"w": torch.ones(2)}), tmp_path / "file")
    assert e.value.field == "teacher_checkpoint"


def test_macos_metadata_and_dot_files_are_skipped(tmp_path):
    files = {
        "pets/cat/1.png": png("red"),
        "pets/dog/1.png": png("blue"),
        "__MACOSX/pets/._x": b"junk",
        "pets/.DS_Store": b"junk",
        "pets/cat/._1.png": b"junk",
    }
    folder = uploads.save_image_zip(zip_bytes(files), tmp_path)
    assert folder.name == "pets" and sorted(p.name for p in folder.rglob("*")) == ["1.png", "1.png", "cat", "dog"]
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == [folder.parent.name]


def test_two_uploads_at_once_do_not_collide(tmp_path):
    import threading

    blob = zip_bytes({f"set/{c}/{i}.png": png(c) for c in ("red", "blue") for i in range(150)})
    results, errors = [], []

    def upload():
        try:
            results.append(uploads.save_image_zip(blob, tmp_path))
        except Exception as e:  # collected to fail the test below with its message
            errors.append(e)

    threads = [threading.Thread(target=upload) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == [results[0].parent.name]
    assert sum(1 for _ in results[0].rglob("*.png")) == 300


def test_randomly_damaged_archives_are_refused_cleanly_or_unpacked(tmp_path):
    import random

    rng = random.Random(0)
    blobs = []
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", method) as z:
            for c in ("red", "blue"):
                for i in range(2):
                    z.writestr(f"set/{c}/{i}.png", png(c) + bytes(range(256)) * 4)
        blobs.append(buf.getvalue())
    for k in range(300):
        blob = bytearray(rng.choice(blobs))
        for _ in range(rng.randint(1, 4)):
            blob[rng.randrange(len(blob))] = rng.randrange(256)
        root = tmp_path / str(k)
        try:
            uploads.save_image_zip(bytes(blob[: rng.randrange(len(blob))] if k % 10 == 0 else blob), root)
        except ConfigError as e:
            assert e.field == "dataset" and "\n" not in e.message
        assert all(not p.name.startswith(".") for p in (root / "uploads").glob("*"))  # no temporary folder left
