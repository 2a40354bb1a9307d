"""Tests for quant_core.inputs.archives.extract_zip: real archives built with zipfile in tmp_path."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from quant_core.errors import InputError
from quant_core.inputs import archives
from quant_core.inputs.archives import extract_zip

# ----------------------------------------------------------------------------- helpers


def make_zip(path: Path, entries: dict[str | zipfile.ZipInfo, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    """Writes a zip; keys are names or ready-made ZipInfo objects (kept verbatim)."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in entries.items():
            if isinstance(name, zipfile.ZipInfo):
                name.compress_type = compression
            zf.writestr(name, data)
    return path


def entry(name: str, mode: int | None = None) -> zipfile.ZipInfo:
    """A ZipInfo with a verbatim file name and optional Unix mode (type + permission bits)."""
    info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    if mode is not None:
        info.create_system = 3  # Unix
        info.external_attr = mode << 16
    return info


def files_under(root: Path) -> dict[str, bytes]:
    """Relative posix path -> contents of every regular file under root."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def noise(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


# ----------------------------------------------------------------------------- normal archives


def test_normal_zip_extracts_every_file(tmp_path):
    contents = {
        "top.txt": b"top level",
        "cats/a.png": noise(3000, 1),
        "cats/deeper/b.bin": noise(10, 2),
        "dogs/c.jpg": b"\xff\xd8" + noise(500, 3),
        "empty.dat": b"",
    }
    archive = make_zip(tmp_path / "ok.zip", {"dogs/": b"", "unused_dir/": b"", **contents})
    dest = tmp_path / "out"
    assert extract_zip(archive, dest) == dest
    assert files_under(dest) == contents
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.zip", "out"]  # nothing written beside dest


def test_stored_zip_and_plain_unix_modes_extract(tmp_path):
    archive = make_zip(tmp_path / "stored.zip", {
        entry("a.txt", 0o100644): b"regular file with type bits",
        entry("b.txt", 0o644): b"permission bits only",
        entry("dir/", 0o040755): b"",
        entry("dir/c.txt", 0o100600): b"nested",
    }, compression=zipfile.ZIP_STORED)
    dest = extract_zip(archive, tmp_path / "out")
    assert files_under(dest) == {"a.txt": b"regular file with type bits", "b.txt": b"permission bits only",
                                 "dir/c.txt": b"nested"}


def test_highly_compressible_but_small_zip_is_fine(tmp_path):
    # Ratio far above MAX_RATIO, but under the 1 MB floor: not treated as a bomb.
    archive = make_zip(tmp_path / "small.zip", {"zeros.bin": bytes(900_000)})
    dest = extract_zip(archive, tmp_path / "out")
    assert (dest / "zeros.bin").stat().st_size == 900_000


def test_destination_must_be_new(tmp_path):
    archive = make_zip(tmp_path / "ok.zip", {"a.txt": b"x"})
    (tmp_path / "out").mkdir()
    with pytest.raises(InputError):
        extract_zip(archive, tmp_path / "out")


# ----------------------------------------------------------------------------- unsafe paths


@pytest.mark.parametrize("name", [
    "../evil.txt",
    "ok/../../evil.txt",
    "..\\evil.txt",
    "ok\\..\\..\\evil.txt",
    "/abs/evil.txt",
    "\\abs\\evil.txt",
    "C:/evil.txt",
    "C:evil.txt",
])
def test_entries_pointing_outside_are_refused_before_writing(tmp_path, name):
    archive = make_zip(tmp_path / "evil.zip", {"first.txt": b"harmless", entry(name): b"payload"})
    with zipfile.ZipFile(archive) as zf:
        assert zf.namelist()[1] == name  # the hostile name really is in the archive
    dest = tmp_path / "box" / "out"
    with pytest.raises(InputError, match="outside the archive"):
        extract_zip(archive, dest)
    assert not dest.exists()  # nothing written, not even the harmless first entry
    assert not (tmp_path / "box" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("mode", [0o120777, 0o120644, 0o010644, 0o060644, 0o140755])
def test_links_and_special_files_are_refused(tmp_path, mode):
    archive = make_zip(tmp_path / "link.zip", {"ok.txt": b"fine", entry("link", mode): b"/etc/passwd"})
    dest = tmp_path / "out"
    with pytest.raises(InputError, match="link or special file"):
        extract_zip(archive, dest)
    assert not dest.exists()


def test_encrypted_entries_are_an_input_error(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("secret.png", b"not really encrypted")
    data = bytearray(buf.getvalue())
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 0x01  # general purpose flag bit 0: encrypted
    archive = tmp_path / "locked.zip"
    archive.write_bytes(bytes(data))
    with zipfile.ZipFile(archive) as zf:
        assert zf.infolist()[0].flag_bits & 0x1
    with pytest.raises(InputError, match="encrypted"):
        extract_zip(archive, tmp_path / "out")


# ----------------------------------------------------------------------------- limits


def test_too_many_entries_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "MAX_ENTRIES", 3)
    archive = make_zip(tmp_path / "many.zip", {f"f{k}.txt": b"x" for k in range(4)})
    dest = tmp_path / "out"
    with pytest.raises(InputError, match="4 entries, more than the limit of 3"):
        extract_zip(archive, dest)
    assert not dest.exists()
    exactly = make_zip(tmp_path / "three.zip", {f"f{k}.txt": b"x" for k in range(3)})
    assert len(files_under(extract_zip(exactly, tmp_path / "out3"))) == 3


def test_zip_bomb_is_refused_quickly_before_writing(tmp_path):
    payload = bytes(50 * 1024 * 1024)
    archive = make_zip(tmp_path / "bomb.zip", {"cats/a.png": b"\x89PNG", "cats/zeros.png": payload})
    del payload
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("cats/zeros.png")
        assert info.file_size / info.compress_size > archives.MAX_RATIO
    dest = tmp_path / "out"
    start = time.perf_counter()
    with pytest.raises(InputError, match="zip bomb"):
        extract_zip(archive, dest)
    assert time.perf_counter() - start < 1.0
    assert not dest.exists()
    assert not any(p.name == "zeros.png" for p in tmp_path.rglob("*"))


def test_total_size_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(archives, "MAX_TOTAL_BYTES", 10_000)
    archive = make_zip(tmp_path / "big.zip", {"a.bin": noise(6_000, 1), "b.bin": noise(6_000, 2)})
    dest = tmp_path / "out"
    with pytest.raises(InputError, match="MB limit"):
        extract_zip(archive, dest)
    assert not dest.exists()


# ----------------------------------------------------------------------------- unreadable archives


def test_random_bytes_are_an_input_error(tmp_path):
    archive = tmp_path / "junk.zip"
    archive.write_bytes(noise(4096))
    with pytest.raises(InputError, match="junk.zip: not a readable .zip archive"):
        extract_zip(archive, tmp_path / "out")


def test_empty_and_missing_files_are_input_errors(tmp_path):
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.zip"):
        extract_zip(empty, tmp_path / "out1")
    with pytest.raises(InputError, match="missing.zip"):
        extract_zip(tmp_path / "missing.zip", tmp_path / "out2")


def test_truncated_zip_is_an_input_error(tmp_path):
    whole = make_zip(tmp_path / "whole.zip", {"a.bin": noise(20_000)}).read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="cut.zip"):
        extract_zip(cut, tmp_path / "out")


def test_crc_mismatch_is_an_input_error(tmp_path):
    archive = make_zip(tmp_path / "crc.zip", {"a.txt": b"A" * 64}, compression=zipfile.ZIP_STORED)
    data = bytearray(archive.read_bytes())
    at = data.find(b"A" * 64)
    data[at + 10] = ord("B")
    archive.write_bytes(bytes(data))
    with pytest.raises(InputError, match="crc.zip"):
        extract_zip(archive, tmp_path / "out")


def test_corrupt_deflate_stream_is_an_input_error(tmp_path):
    archive = make_zip(tmp_path / "bad.zip", {"a.bin": np.random.default_rng(0).integers(
        0, 4, 20_000, dtype=np.uint8).tobytes()})
    data = bytearray(archive.read_bytes())
    for k in range(60, 200):  # inside the compressed data of the only entry
        data[k] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(InputError, match="bad.zip: not a readable .zip archive"):
        extract_zip(archive, tmp_path / "out")


def test_unsupported_compression_is_an_input_error(tmp_path):
    archive = make_zip(tmp_path / "odd.zip", {"a.txt": b"hello"}, compression=zipfile.ZIP_STORED)
    data = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = data.find(signature)
        data[at + offset: at + offset + 2] = (9).to_bytes(2, "little")  # deflate64: unsupported
    archive.write_bytes(bytes(data))
    with pytest.raises(InputError, match="odd.zip"):
        extract_zip(archive, tmp_path / "out")
