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
    monkeypatch.setattr(uploads, "MAX_MB", 0.001)  # 1,000 bytes
    with pytest.raises(ConfigError, match="over the 0 MB limit"):
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
