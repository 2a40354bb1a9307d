"""Tests for quant_core.inputs.datasets: folders, .zip and .tar archives listed lazily, sharded, sampled and decoded.

Every dataset is built from real PNG/JPEG files written with Pillow under tmp_path, and real
archives written with zipfile/tarfile.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
import zipfile
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quant_core.errors import ImageError, InputError
from quant_core.inputs import datasets
from quant_core.inputs.datasets import Container, Dataset, Entry, decode_entries, open_dataset
from quant_core.inputs.images import ImageSet, SkippedFile

# ----------------------------------------------------------------------------- helpers

SIZE = 8


def colour(k: int) -> tuple[int, int, int]:
    """A distinct RGB colour per k (no two of the first few hundred alike)."""
    return (37 * k % 256, (200 + 91 * k) % 256, (150 + 53 * k) % 256)


def image_bytes(k: int, fmt: str = "PNG", size: int = SIZE) -> bytes:
    """A small real image, one colour plus a distinct top-left pixel (so no two images decode alike)."""
    image = Image.new("RGB", (size, size), colour(k))
    image.putpixel((0, 0), (k % 256, 255 - k % 256, 7))
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def noise_png(size: int = 64, seed: int = 0) -> bytes:
    """A PNG of random pixels: incompressible, so several kB."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def pixels_of(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8)


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Writes files (posix relative path -> bytes) under root and returns root."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    root.mkdir(parents=True, exist_ok=True)
    return root


def make_zip(path: Path, files: dict[str, bytes]) -> Path:
    """A .zip whose member names are kept verbatim (even unsafe ones)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return path


def tar_info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname, info.mode = size, kind, link, 0o644
    return info


def make_tar(path: Path, files: dict[str, bytes], mode: str = "w", links: dict[str, str] | None = None) -> Path:
    """A tar (mode "w", "w:gz", ...) of regular members named verbatim, plus symlink members name -> target."""
    with tarfile.open(path, mode) as tf:
        for name, data in files.items():
            tf.addfile(tar_info(name, len(data)), io.BytesIO(data))
        for name, target in (links or {}).items():
            tf.addfile(tar_info(name, kind=tarfile.SYMTYPE, link=target))
    return path


ARCHIVES = {  # suffix -> writer
    ".zip": make_zip,
    ".tar": make_tar,
    ".tar.gz": lambda path, files: make_tar(path, files, "w:gz"),
    ".tgz": lambda path, files: make_tar(path, files, "w:gz"),
    ".tar.bz2": lambda path, files: make_tar(path, files, "w:bz2"),
    ".tar.xz": lambda path, files: make_tar(path, files, "w:xz"),
}


def build(kind: str, tmp_path: Path, files: dict[str, bytes], stem: str = "pets") -> Path:
    """The files as a folder (kind "folder") or as an archive of the given suffix."""
    if kind == "folder":
        return write_tree(tmp_path / stem, files)
    return ARCHIVES[kind](tmp_path / f"{stem}{kind}", files)


def container_of(kind: str) -> Container:
    return {"folder": Container.FILE, ".zip": Container.ZIP}.get(kind, Container.TAR)


def decoded(dataset: Dataset, indices=None) -> list[tuple[int, np.ndarray | SkippedFile]]:
    return list(decode_entries(dataset, range(len(dataset)) if indices is None else indices))


# Four labelled images, two classes, PNG and JPEG, deliberately written out of order.
PETS = {
    "dog/d.jpg": image_bytes(4, "JPEG"),
    "cat/b.png": image_bytes(2),
    "dog/c.png": image_bytes(3),
    "cat/a.png": image_bytes(1),
}
PET_NAMES = ("cat/a.png", "cat/b.png", "dog/c.png", "dog/d.jpg")
PET_LABELS = ("cat", "cat", "dog", "dog")


# ----------------------------------------------------------------------------- folders


def test_folder_of_class_folders_is_listed_sorted_with_labels(tmp_path):
    root = write_tree(tmp_path / "pets", {
        **PETS,
        ".hidden.png": image_bytes(9),
        "cat/.DS_Store": b"\0\0\0\1Bud1",
        ".git/objects/x.png": image_bytes(10),
        "__MACOSX/cat/._a.png": b"\0\5\26\7",
        "notes.txt": b"collected in 2024",
        "cat/x.bin": b"\1\2\3",
    })
    ds = open_dataset([root])

    assert [e.name for e in ds.entries] == [f"pets/{n}" for n in PET_NAMES]
    assert tuple(e.label_name for e in ds.entries) == PET_LABELS
    assert ds.labelled
    assert len(ds) == 4
    for entry, rel in zip(ds.entries, PET_NAMES):
        assert entry.container is Container.FILE
        assert entry.member == ""
        assert Path(entry.source).is_absolute()
        assert Path(entry.source) == (root / rel).resolve()
    assert ds.skipped == (SkippedFile("pets/cat/x.bin", "not an image file"),)
    assert ds.description == str(root)
    assert open_dataset([root]) == ds  # deterministic


def test_single_wrapper_folder_is_not_a_class(tmp_path):
    root = write_tree(tmp_path / "root", {"wrap/cat/a.png": image_bytes(1), "wrap/dog/b.png": image_bytes(2)})
    ds = open_dataset([root])
    assert [(e.name, e.label_name) for e in ds.entries] == [("root/wrap/cat/a.png", "cat"),
                                                            ("root/wrap/dog/b.png", "dog")]
    assert ds.labelled


def test_single_class_folder_without_deeper_folders_is_a_class(tmp_path):
    root = write_tree(tmp_path / "root", {"cat/a.png": image_bytes(1), "cat/b.png": image_bytes(2)})
    assert [e.label_name for e in open_dataset([root]).entries] == ["cat", "cat"]


def test_images_at_the_top_of_a_folder_are_unlabelled(tmp_path):
    root = write_tree(tmp_path / "root", {"cat/a.png": image_bytes(1), "loose.png": image_bytes(2)})
    ds = open_dataset([root])
    assert [(e.name, e.label_name) for e in ds.entries] == [("root/cat/a.png", "cat"), ("root/loose.png", None)]
    assert not ds.labelled


def test_symlinked_file_in_a_folder_is_not_listed(tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(image_bytes(5))
    root = write_tree(tmp_path / "root", {"cat/a.png": image_bytes(1)})
    (root / "cat" / "link.png").symlink_to(outside)
    assert [e.name for e in open_dataset([root]).entries] == ["root/cat/a.png"]


# ----------------------------------------------------------------------------- archives


@pytest.mark.parametrize("wrapped", [False, True], ids=["flat", "wrapped"])
@pytest.mark.parametrize("kind", list(ARCHIVES))
def test_archive_gives_the_same_labels_and_pixels_as_the_folder(tmp_path, kind, wrapped):
    folder = open_dataset([write_tree(tmp_path / "pets", PETS)])
    prefix = "pets/" if wrapped else ""
    path = ARCHIVES[kind](tmp_path / f"pets{kind}", {prefix + rel: data for rel, data in PETS.items()})
    ds = open_dataset([path])

    assert [e.name for e in ds.entries] == [f"{path.name}/{prefix}{n}" for n in PET_NAMES]
    assert [e.member for e in ds.entries] == [prefix + n for n in PET_NAMES]
    assert tuple(e.label_name for e in ds.entries) == PET_LABELS == tuple(e.label_name for e in folder.entries)
    assert {e.container for e in ds.entries} == {container_of(kind)}
    assert {e.source for e in ds.entries} == {str(path.resolve())}
    assert ds.labelled and ds.skipped == ()

    got, want = decoded(ds), decoded(folder)
    assert [i for i, _ in got] == [0, 1, 2, 3]
    for (_, a), (_, b), rel in zip(got, want, PET_NAMES):
        assert isinstance(a, np.ndarray) and a.dtype == np.uint8 and a.shape == (SIZE, SIZE, 3)
        np.testing.assert_array_equal(a, b)
        if rel.endswith(".png"):
            np.testing.assert_array_equal(a, pixels_of(PETS[rel]))


def test_archive_skips_hidden_notes_and_non_images_like_a_folder(tmp_path):
    path = make_zip(tmp_path / "pets.zip", {
        "cat/a.png": image_bytes(1),
        "__MACOSX/cat/._a.png": b"\0\5\26\7",
        "cat/.hidden.png": image_bytes(2),
        "readme.md": b"# pets",
        "dog/x.bin": b"\1\2",
        "dog/": b"",
    })
    ds = open_dataset([path])
    assert [e.name for e in ds.entries] == ["pets.zip/cat/a.png"]
    assert ds.skipped == (SkippedFile("pets.zip/dog/x.bin", "not an image file"),)


def test_unsafe_tar_members_are_left_out(tmp_path):
    path = make_tar(tmp_path / "evil.tar", {
        "cat/ok.png": image_bytes(1),
        "../evil.png": image_bytes(2),
        "/abs.png": image_bytes(3),
        "cat/../../up.png": image_bytes(4),
    }, links={"cat/link.png": "ok.png", "dog/passwd.png": "/etc/passwd"})
    with tarfile.open(path) as tf:  # the hostile members really are in the archive
        assert {"../evil.png", "/abs.png", "cat/link.png"} <= set(tf.getnames())
    ds = open_dataset([path])
    assert [(e.name, e.member) for e in ds.entries] == [("evil.tar/cat/ok.png", "cat/ok.png")]
    assert ds.skipped == ()


def test_unsafe_zip_members_are_left_out(tmp_path):
    path = make_zip(tmp_path / "evil.zip", {
        "cat/ok.png": image_bytes(1),
        "../evil.png": image_bytes(2),
        "cat/../../up.png": image_bytes(3),
        "..\\win.png": image_bytes(4),
        "/abs.png": image_bytes(5),
    })
    with zipfile.ZipFile(path) as zf:
        assert {"../evil.png", "/abs.png"} <= set(zf.namelist())
    ds = open_dataset([path])
    assert [(e.name, e.member) for e in ds.entries] == [("evil.zip/cat/ok.png", "cat/ok.png")]


# ----------------------------------------------------------------------------- decode_entries


@pytest.mark.parametrize("kind", ["folder", ".zip", ".tar", ".tar.gz"])
def test_decode_entries_yields_pixels_and_skips_corrupt_files_in_index_order(tmp_path, kind):
    files = {
        "cat/a.png": image_bytes(1),
        "cat/bad.png": b"not an image",
        "dog/c.png": image_bytes(3),
        "dog/d.png": image_bytes(4),
    }
    ds = open_dataset([build(kind, tmp_path, files)])
    assert [e.name.split("/", 1)[1] for e in ds.entries] == ["cat/a.png", "cat/bad.png", "dog/c.png", "dog/d.png"]

    got = list(decode_entries(ds, [3, 1, 0]))  # a subset, out of order

    assert [i for i, _ in got] == [0, 1, 3]
    (_, a), (_, bad), (_, d) = got
    for pixels, rel in ((a, "cat/a.png"), (d, "dog/d.png")):
        assert isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8 and pixels.shape == (SIZE, SIZE, 3)
        np.testing.assert_array_equal(pixels, pixels_of(files[rel]))
    assert isinstance(bad, SkippedFile)
    assert bad.name == ds.entries[1].name
    assert bad.reason.startswith("not a readable image")
    assert list(decode_entries(ds, [])) == []


@pytest.mark.parametrize("kind", ["folder", ".zip", ".tar", ".tar.gz"])
def test_file_over_the_size_limit_is_skipped(tmp_path, kind, monkeypatch):
    big = noise_png()
    files = {"cat/big.png": big, "cat/small.png": image_bytes(1)}
    assert len(files["cat/small.png"]) < 1000 < len(big)
    ds = open_dataset([build(kind, tmp_path, files)])
    monkeypatch.setattr(datasets, "MAX_FILE_BYTES", 1000)

    (i, skipped), (j, pixels) = decoded(ds)

    assert (i, j) == (0, 1)
    assert isinstance(skipped, SkippedFile) and skipped.name == ds.entries[0].name
    assert "limit" in skipped.reason and skipped.reason.startswith("over the")
    np.testing.assert_array_equal(pixels, pixels_of(files["cat/small.png"]))

    monkeypatch.setattr(datasets, "MAX_FILE_BYTES", len(big))  # exactly at the limit is allowed
    np.testing.assert_array_equal(decoded(ds, [0])[0][1], pixels_of(big))


def test_file_deleted_after_listing_is_skipped_not_raised(tmp_path):
    root = write_tree(tmp_path / "pets", {"cat/a.png": image_bytes(1), "cat/b.png": image_bytes(2)})
    ds = open_dataset([root])
    (root / "cat" / "a.png").unlink()
    (_, gone), (_, pixels) = decoded(ds)
    assert isinstance(gone, SkippedFile) and gone.name == "pets/cat/a.png" and "cannot be read" in gone.reason
    assert isinstance(pixels, np.ndarray)


def _set_zip_bits(path: Path, *, flags: int = 0, method: int | None = None) -> None:
    """Rewrites the first member's general-purpose flags / compression method in both zip headers."""
    raw = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.find(signature) + offset
        raw[at] |= flags
        if method is not None:
            raw[at + 2:at + 4] = struct.pack("<H", method)
    path.write_bytes(raw)


def test_an_encrypted_zip_member_is_not_listed(tmp_path):
    path = make_zip(tmp_path / "pets.zip", {"cat/a.png": image_bytes(1), "cat/b.png": image_bytes(2)})
    _set_zip_bits(path, flags=1)
    ds = open_dataset([path])
    assert [e.member for e in ds.entries] == ["cat/b.png"]
    assert isinstance(decoded(ds)[0][1], np.ndarray)


def test_a_zip_member_in_an_unsupported_compression_is_skipped(tmp_path):
    path = make_zip(tmp_path / "pets.zip", {"cat/a.png": image_bytes(1), "cat/b.png": image_bytes(2)})
    _set_zip_bits(path, method=9)  # Deflate64, which Windows writes for large archives
    (_, first), (_, second) = decoded(open_dataset([path]))
    assert isinstance(first, SkippedFile) and "cannot be read (NotImplementedError)" in first.reason
    assert isinstance(second, np.ndarray)


# ----------------------------------------------------------------------------- shards


def fake_dataset(n: int) -> Dataset:
    """A dataset of n entries that are never read (shards only count)."""
    return Dataset(tuple(Entry(f"d/{k}.png", None, Container.FILE, f"/nowhere/{k}.png") for k in range(n)))


def test_shards_example():
    assert fake_dataset(10).shards(4) == ((0, 4), (4, 8), (8, 10))


@pytest.mark.parametrize(("n", "size"), [(10, 4), (10, 1), (10, 10), (10, 25), (7, 3), (1, 5), (0, 4), (10, 0),
                                         (10, -2)])
def test_shards_cover_every_index_once_in_order(n, size):
    shards = fake_dataset(n).shards(size)
    covered = [i for start, stop in shards for i in range(start, stop)]
    assert covered == list(range(n))
    assert all(0 < stop - start <= max(1, size) for start, stop in shards)
    assert all(stop - start == max(1, size) for start, stop in shards[:-1])


def test_shard_size_zero_is_one():
    assert fake_dataset(3).shards(0) == ((0, 1), (1, 2), (2, 3)) == fake_dataset(3).shards(1)


# ----------------------------------------------------------------------------- sample


def three_classes(tmp_path: Path, bad: Collection[str] = ()) -> Dataset:
    """ant/bee/cow x 4 images (0.png .. 3.png); names in `bad` are corrupt files."""
    files = {f"{cls}/{k}.png": b"not an image" if f"{cls}/{k}.png" in bad else image_bytes(4 * c + k)
             for c, cls in enumerate(("cow", "ant", "bee")) for k in range(4)}
    return open_dataset([write_tree(tmp_path / "bugs", files)])


@pytest.mark.parametrize(("limit", "expected"), [
    (3, ["ant/0", "bee/0", "cow/0"]),
    (5, ["ant/0", "ant/1", "bee/0", "bee/1", "cow/0"]),
    (6, ["ant/0", "ant/1", "bee/0", "bee/1", "cow/0", "cow/1"]),
    (100, [f"{c}/{k}" for c in ("ant", "bee", "cow") for k in range(4)]),
])
def test_sample_spreads_over_classes_in_dataset_order(tmp_path, limit, expected):
    ds = three_classes(tmp_path)
    sample = ds.sample(limit)
    assert isinstance(sample, ImageSet)
    assert [i.name for i in sample.items] == [f"bugs/{n}.png" for n in expected]
    assert [i.label_name for i in sample.items] == [n.split("/")[0] for n in expected]
    assert sample.labelled and sample.skipped == ()
    by_name = {e.name: k for k, e in enumerate(ds.entries)}
    for item in sample.items:
        assert item.pixels.dtype == np.uint8 and item.pixels.shape == (SIZE, SIZE, 3)
        _, pixels = decoded(ds, [by_name[item.name]])[0]
        np.testing.assert_array_equal(item.pixels, pixels)
    assert ds.sample(limit).digest() == sample.digest()  # the same dataset gives the same sample


def test_sample_records_unreadable_images_and_the_datasets_skipped_files(tmp_path):
    ds = three_classes(tmp_path, bad={"bee/0.png"})
    ds = Dataset(ds.entries, (SkippedFile("bugs/x.bin", "not an image file"),), ds.description)
    sample = ds.sample(3)
    assert [i.name for i in sample.items] == ["bugs/ant/0.png", "bugs/cow/0.png"]
    assert sample.skipped[0] == SkippedFile("bugs/x.bin", "not an image file")
    assert [s.name for s in sample.skipped] == ["bugs/x.bin", "bugs/bee/0.png"]
    assert sample.skipped[1].reason.startswith("not a readable image")


def test_sample_of_unlabelled_images_takes_the_first_ones(tmp_path):
    paths = [tmp_path / f"{k}.png" for k in range(4)]
    for k, path in enumerate(paths):
        path.write_bytes(image_bytes(k))
    sample = open_dataset(paths).sample(2)
    assert [i.name for i in sample.items] == ["0.png", "1.png"]
    assert not sample.labelled


def test_sample_with_no_readable_image_raises(tmp_path):
    ds = three_classes(tmp_path, bad={"ant/0.png", "bee/0.png", "cow/0.png"})
    with pytest.raises(ImageError, match="none of the 3 images sampled"):
        ds.sample(3)
    assert len(ds.sample(4).items) == 1  # one more pick reaches a readable image


# ----------------------------------------------------------------------------- open_dataset errors


def test_missing_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file or folder") as excinfo:
        open_dataset([tmp_path / "nope"])
    assert not isinstance(excinfo.value, ImageError)


@pytest.mark.parametrize("files", [{}, {"notes.txt": b"hi", "x.bin": b"\1", ".hidden.png": image_bytes(1)}],
                         ids=["empty", "no-images"])
def test_folder_without_images_is_an_image_error(tmp_path, files):
    with pytest.raises(ImageError, match="no images found"):
        open_dataset([write_tree(tmp_path / "empty", files)])


def test_random_bytes_named_zip_are_not_an_archive(tmp_path):
    data = tmp_path / "data.zip"
    data.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert not zipfile.is_zipfile(data)
    image = tmp_path / "a.png"
    image.write_bytes(image_bytes(1))

    ds = open_dataset([data, image])
    assert [e.name for e in ds.entries] == ["a.png"]
    assert ds.skipped == (SkippedFile("data.zip", "not an image, folder, .zip or .tar"),)
    with pytest.raises(ImageError, match="no images found"):
        open_dataset([data])


def test_zip_with_a_broken_central_directory_is_an_input_error(tmp_path):
    path = make_zip(tmp_path / "broken.zip", {"cat/a.png": image_bytes(1)})
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"PK\x01\x02", b"XX\x01\x02"))
    assert zipfile.is_zipfile(path)  # the end record is intact
    with pytest.raises(InputError, match="broken.zip: not a readable .zip archive"):
        open_dataset([path])


# ----------------------------------------------------------------------------- pickling and loose files


@pytest.mark.parametrize("kind", ["folder", ".zip", ".tar.gz"])
def test_dataset_and_slices_pickle_round_trip(tmp_path, kind):
    files = {f"{c}/{k}.png": image_bytes(3 * i + k) for i, c in enumerate(("a", "b")) for k in range(3)}
    ds = open_dataset([build(kind, tmp_path, {**files, "a/x.bin": b"\1"})])
    part = Dataset(ds.entries[2:5])
    for original in (ds, part):
        copy = pickle.loads(pickle.dumps(original))
        assert copy == original
        assert copy.entries[0].container is original.entries[0].container
        assert copy.shards(2) == original.shards(2)
    for (i, a), (j, b) in zip(decoded(pickle.loads(pickle.dumps(part))), decoded(ds, [2, 3, 4])):
        assert i + 2 == j
        np.testing.assert_array_equal(a, b)


def test_loose_image_files_are_unlabelled_entries(tmp_path):
    a = tmp_path / "a.png"
    b = tmp_path / "B.JPG"
    a.write_bytes(image_bytes(1))
    b.write_bytes(image_bytes(2, "JPEG"))
    folder = write_tree(tmp_path / "pets", {"cat/c.png": image_bytes(3)})

    ds = open_dataset([str(b), folder, a])  # paths keep the order they were given in

    assert [(e.name, e.label_name, e.container) for e in ds.entries] == [
        ("B.JPG", None, Container.FILE), ("pets/cat/c.png", "cat", Container.FILE), ("a.png", None, Container.FILE)]
    assert [e.source for e in ds.entries] == [str(b.resolve()), str((folder / "cat/c.png").resolve()),
                                              str(a.resolve())]
    assert not ds.labelled
    assert not open_dataset([a]).labelled
    (_, pixels), = decoded(open_dataset([a]))
    np.testing.assert_array_equal(pixels, pixels_of(image_bytes(1)))
