"""Tests for quant_core.inputs.images: decoding, folders, archives, digests and labels.

Every image here is written to tmp_path by the test itself (Pillow/numpy/zipfile) and
decoded for real; assertions are on decoded pixel values.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from quant_core.errors import ImageError, InputError
from quant_core.inputs import images as images_mod
from quant_core.inputs.images import (ImageItem, ImageSet, Labels, SkippedFile, decode_image, load_images,
                                      read_labels_file, resolve_labels)

# ----------------------------------------------------------------------------- helpers


def rand_rgb(h: int = 6, w: int = 5, seed: int = 0) -> np.ndarray:
    """A deterministic random RGB uint8 image."""
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def encode(image: Image.Image | np.ndarray, fmt: str, **kwargs) -> bytes:
    """Encodes a Pillow image (or array) to bytes in the given format."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    """Writes bytes, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def solid(rgb: tuple[int, int, int], h: int = 4, w: int = 4) -> np.ndarray:
    """A single-colour RGB image."""
    return np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header declares width x height 8-bit gray pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + png_chunk(b"IEND", b""))


def make_zip(path: Path, entries: dict[str, bytes]) -> Path:
    """Writes a deflated zip with the given entries (names ending in / are folders)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def item(name: str, label: str | None, value: int = 0) -> ImageItem:
    """A tiny in-memory ImageItem for label tests."""
    return ImageItem(name, solid((value, value, value), 2, 2), label)


def image_set(*labels: str | None) -> ImageSet:
    return ImageSet(tuple(item(f"img{k}.png", lab, k) for k, lab in enumerate(labels)))


@pytest.fixture()
def spy_load(monkeypatch):
    """Counts calls of Pillow's pixel decoder (the real one still runs)."""
    calls = []
    real = ImageFile.ImageFile.load

    def counting(self, *args, **kwargs):
        calls.append(self.size)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting)
    return calls


# ----------------------------------------------------------------------------- decode_image: formats


@pytest.mark.parametrize(("fmt", "kwargs"), [
    ("PNG", {}),
    ("BMP", {}),
    ("WEBP", {"lossless": True}),
    ("TIFF", {}),
    ("TIFF", {"compression": "tiff_deflate"}),
    ("PPM", {}),
])
def test_lossless_formats_decode_exactly(fmt, kwargs):
    pixels = rand_rgb(7, 9, seed=3)
    out = decode_image(encode(pixels, fmt, **kwargs), f"x.{fmt.lower()}")
    assert out.dtype == np.uint8
    assert out.shape == (7, 9, 3)
    np.testing.assert_array_equal(out, pixels)


def test_jpeg_decodes_close_to_original():
    pixels = solid((200, 30, 60), 16, 16)
    data = encode(pixels, "JPEG", quality=95)
    assert data[:2] == b"\xff\xd8"
    out = decode_image(data, "x.jpg")
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - pixels.astype(int)).max() <= 4


def test_grayscale_jpeg_becomes_rgb_with_equal_channels():
    gray = np.tile(np.linspace(0, 255, 16).astype(np.uint8), (16, 1))
    out = decode_image(encode(Image.fromarray(gray, "L"), "JPEG", quality=95), "g.jpg")
    assert out.shape == (16, 16, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 1], out[..., 2])


def test_gif_palette_image_decodes_to_its_colours():
    palette_image = Image.new("P", (4, 2))
    palette_image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30] + [0] * (252 * 3))
    palette_image.putdata([0, 1, 2, 3, 3, 2, 1, 0])
    data = encode(palette_image, "GIF")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "P"
    out = decode_image(data, "p.gif")
    expected = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]],
                         [[10, 20, 30], [0, 0, 255], [0, 255, 0], [255, 0, 0]]], np.uint8)
    np.testing.assert_array_equal(out, expected)


def test_grayscale_png_becomes_rgb_with_equal_channels():
    gray = np.array([[0, 17, 128], [200, 254, 255]], np.uint8)
    out = decode_image(encode(Image.fromarray(gray, "L"), "PNG"), "g.png")
    assert out.shape == (2, 3, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


def test_bilevel_image_maps_to_black_and_white():
    image = Image.new("1", (2, 1))
    image.putpixel((1, 0), 1)
    out = decode_image(encode(image, "PNG"), "b.png")
    np.testing.assert_array_equal(out, [[[0, 0, 0], [255, 255, 255]]])


def test_rgba_is_composited_on_white():
    rgba = np.array([[[0, 0, 0, 0], [255, 0, 0, 255], [0, 0, 0, 128], [0, 0, 255, 0]]], np.uint8)
    out = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), "a.png")
    assert out.shape == (1, 4, 3)
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])  # fully transparent black -> white
    np.testing.assert_array_equal(out[0, 1], [255, 0, 0])  # opaque red stays red
    assert all(abs(int(v) - 127) <= 1 for v in out[0, 2])  # half-transparent black -> mid gray
    np.testing.assert_array_equal(out[0, 3], [255, 255, 255])  # transparent blue -> white


def test_rgba_webp_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2] = [0, 255, 0, 255]
    out = decode_image(encode(Image.fromarray(rgba, "RGBA"), "WEBP", lossless=True), "a.webp")
    np.testing.assert_array_equal(out[:2], solid((0, 255, 0), 2, 4))
    np.testing.assert_array_equal(out[2:], solid((255, 255, 255), 2, 4))


def test_gray_alpha_is_composited_on_white():
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (0, 0))
    la.putpixel((1, 0), (50, 255))
    out = decode_image(encode(la, "PNG"), "la.png")
    np.testing.assert_array_equal(out, [[[255, 255, 255], [50, 50, 50]]])


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_is_composited_on_white(fmt):
    image = Image.new("P", (3, 1))
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (253 * 3))
    image.putdata([0, 1, 2])
    data = encode(image, fmt, transparency=0)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "P" and check.info.get("transparency") is not None
    out = decode_image(data, f"t.{fmt.lower()}")
    np.testing.assert_array_equal(out, [[[255, 255, 255], [255, 0, 0], [0, 0, 255]]])


@pytest.mark.parametrize(("mode", "pixels", "key"), [
    ("L", np.array([[0, 100]], np.uint8), 0),
    ("RGB", np.array([[[0, 0, 0], [100, 0, 0]]], np.uint8), (0, 0, 0)),
])
def test_colour_key_transparency_is_composited_on_white(mode, pixels, key):
    data = encode(Image.fromarray(pixels, mode), "PNG", transparency=key)
    out = decode_image(data, "k.png")
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    assert out[0, 1, 0] == 100


def test_16_bit_grayscale_png_is_scaled_to_8_bit():
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    data = encode(Image.fromarray(values), "PNG")
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode.startswith("I")
    out = decode_image(data, "deep.png")
    assert out.dtype == np.uint8 and out.shape == (1, 4, 3)
    np.testing.assert_array_equal(out[..., 0], [[0, 1, 128, 255]])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_dark_16_bit_png_is_not_mistaken_for_8_bit():
    values = np.array([[0, 200]], np.uint16)  # 200/65535 of full scale: nearly black
    out = decode_image(encode(Image.fromarray(values), "PNG"), "dark.png")
    np.testing.assert_array_equal(out[..., 0], [[0, 1]])


def test_16_bit_tiff_is_scaled_to_8_bit():
    values = np.array([[65535, 32896]], np.uint16)
    out = decode_image(encode(Image.fromarray(values), "TIFF"), "deep.tif")
    np.testing.assert_array_equal(out[..., 1], [[255, 128]])


# ----------------------------------------------------------------------------- decode_image: failures


def test_empty_bytes_are_an_image_error():
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"", "empty.png")


@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_truncated_png_is_an_image_error(keep):
    data = encode(rand_rgb(64, 64), "PNG")
    with pytest.raises(ImageError, match="cut.png"):
        decode_image(data[: int(len(data) * keep)], "cut.png")


def test_text_is_an_image_error():
    with pytest.raises(ImageError, match="notes.png: not a readable image"):
        decode_image(b"hello, this is not an image\n" * 10, "notes.png")


def test_declared_size_over_max_pixels_is_refused_before_decoding(spy_load):
    with pytest.raises(ImageError, match=r"8000x8000 pixels is over the 50 MP limit"):
        decode_image(png_claiming(8000, 8000), "huge.png")
    assert spy_load == []


@pytest.mark.parametrize("side", [10_000, 100_000])
def test_enormous_declared_size_is_reported_as_too_large(side, spy_load):
    # Above Pillow's own bomb threshold: still a clear "too large" message, not "unreadable".
    with pytest.raises(ImageError, match="limit") as info:
        decode_image(png_claiming(side, side), "bomb.png")
    assert "not a readable" not in str(info.value)
    assert spy_load == []


def test_max_pixels_is_honoured_when_lowered(monkeypatch, spy_load):
    monkeypatch.setattr(images_mod, "MAX_PIXELS", 100)
    assert decode_image(encode(rand_rgb(10, 10), "PNG"), "ok.png").shape == (10, 10, 3)
    loads_before = len(spy_load)
    assert loads_before >= 1  # the spy does see real decodes
    with pytest.raises(ImageError, match="11x10 pixels"):
        decode_image(encode(rand_rgb(10, 11), "PNG"), "big.png")
    assert len(spy_load) == loads_before


# ----------------------------------------------------------------------------- load_images: files


def test_load_images_reads_files_in_the_given_order(tmp_path):
    a = write(tmp_path / "b_first.png", encode(solid((1, 2, 3)), "PNG"))
    b = write(tmp_path / "a_second.bmp", encode(solid((4, 5, 6)), "BMP"))
    result = load_images([a, str(b)])
    assert [i.name for i in result.items] == ["b_first.png", "a_second.bmp"]
    assert [i.label_name for i in result.items] == [None, None]
    np.testing.assert_array_equal(result.items[0].pixels, solid((1, 2, 3)))
    np.testing.assert_array_equal(result.items[1].pixels, solid((4, 5, 6)))
    assert result.skipped == ()
    assert not result.labelled


def test_unreadable_files_are_skipped_and_named(tmp_path):
    good = write(tmp_path / "good.png", encode(solid((9, 9, 9)), "PNG"))
    empty = write(tmp_path / "empty.png", b"")
    full = encode(rand_rgb(48, 48), "PNG")
    truncated = write(tmp_path / "truncated.png", full[: len(full) // 2])
    text = write(tmp_path / "text.png", b"just some words\n")
    result = load_images([empty, good, truncated, text])
    assert [i.name for i in result.items] == ["good.png"]
    assert [s.name for s in result.skipped] == ["empty.png", "truncated.png", "text.png"]
    assert all(isinstance(s, SkippedFile) and s.reason for s in result.skipped)
    assert result.skipped[0].reason == "empty file"
    assert "not a readable image" in result.skipped[2].reason


def test_all_unreadable_is_a_one_line_image_error(tmp_path):
    empty = write(tmp_path / "empty.png", b"")
    text = write(tmp_path / "readme.jpg", b"line one\nline two\n")
    with pytest.raises(ImageError) as info:
        load_images([empty, text])
    message = str(info.value)
    assert "\n" not in message
    assert "no usable images" in message
    assert "empty.png" in message and "readme.jpg" in message


def test_no_paths_is_an_image_error():
    with pytest.raises(ImageError, match="no usable images"):
        load_images([])


def test_missing_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file") as info:
        load_images([tmp_path / "nope.png"])
    assert type(info.value) is InputError


def test_too_many_images_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(images_mod, "MAX_IMAGES", 2)
    for k in range(3):
        write(tmp_path / "d" / f"{k}.png", encode(solid((k, k, k)), "PNG"))
    with pytest.raises(ImageError, match="limit is 2"):
        load_images([tmp_path / "d"])


# ----------------------------------------------------------------------------- load_images: folders


def make_class_tree(root: Path) -> dict[str, np.ndarray]:
    """cats/ dogs/ class folders and one loose file; returns relative name -> pixels."""
    files = {
        "dogs/d2.png": solid((0, 0, 200)),
        "cats/c1.png": solid((200, 0, 0)),
        "dogs/d1.png": solid((0, 0, 100)),
        "cats/c0.bmp": solid((100, 0, 0)),
    }
    for rel, pixels in files.items():
        write(root / rel, encode(pixels, "BMP" if rel.endswith(".bmp") else "PNG"))
    return files


def test_class_subfolders_give_labels_in_sorted_order(tmp_path):
    root = tmp_path / "data"
    files = make_class_tree(root)
    result = load_images([root])
    assert [i.name for i in result.items] == ["data/cats/c0.bmp", "data/cats/c1.png", "data/dogs/d1.png",
                                              "data/dogs/d2.png"]
    assert [i.label_name for i in result.items] == ["cats", "cats", "dogs", "dogs"]
    for it in result.items:
        np.testing.assert_array_equal(it.pixels, files[it.name.removeprefix("data/")])
    assert result.labelled


def test_loose_files_are_unlabelled(tmp_path):
    root = tmp_path / "data"
    make_class_tree(root)
    write(root / "loose.png", encode(solid((5, 5, 5)), "PNG"))
    result = load_images([root])
    labels = {i.name: i.label_name for i in result.items}
    assert labels["data/loose.png"] is None
    assert labels["data/cats/c1.png"] == "cats"
    assert not result.labelled


def test_folder_of_loose_files_only(tmp_path):
    for k in (3, 1, 2):
        write(tmp_path / "flat" / f"{k}.png", encode(solid((k, k, k)), "PNG"))
    result = load_images([tmp_path / "flat"])
    assert [i.name for i in result.items] == ["flat/1.png", "flat/2.png", "flat/3.png"]
    assert all(i.label_name is None for i in result.items)


def test_hidden_files_and_macosx_are_ignored(tmp_path):
    root = tmp_path / "data"
    make_class_tree(root)
    junk = encode(solid((1, 1, 1)), "PNG")
    write(root / ".hidden.png", junk)
    write(root / "cats" / "._c1.png", b"\0\5\26\7 apple double")
    write(root / ".git" / "x.png", junk)
    write(root / "__MACOSX" / "cats" / "._c1.png", b"\0\5\26\7")
    write(root / ".DS_Store", b"\0\0\0\1Bud1")
    result = load_images([root])
    assert [i.name for i in result.items] == ["data/cats/c0.bmp", "data/cats/c1.png", "data/dogs/d1.png",
                                              "data/dogs/d2.png"]
    assert result.skipped == ()


def test_non_image_files_are_reported_as_skipped(tmp_path):
    root = tmp_path / "data"
    make_class_tree(root)
    write(root / "cats" / "model.h5", b"\x89HDF")
    write(root / "notes.txt", b"documentation is not skipped noisily")
    write(root / "labels.json", b"[]")
    result = load_images([root])
    assert len(result.items) == 4
    assert result.skipped == (SkippedFile("data/cats/model.h5", "not an image file"),)


def test_order_does_not_depend_on_creation_order(tmp_path):
    names = ["b/z.png", "a/y.png", "b/a.png", "a/b.png", "c.png"]
    for order, root in ((names, tmp_path / "one" / "d"), (names[::-1], tmp_path / "two" / "d")):
        for rel in order:
            write(root / rel, encode(solid((len(rel), 0, 0)), "PNG"))
    one = load_images([tmp_path / "one" / "d"])
    two = load_images([tmp_path / "two" / "d"])
    assert [i.name for i in one.items] == ["d/a/b.png", "d/a/y.png", "d/b/a.png", "d/b/z.png", "d/c.png"]
    assert [i.name for i in one.items] == [i.name for i in two.items]
    assert one.digest() == two.digest()


# ----------------------------------------------------------------------------- load_images: zip archives


def tree_entries(prefix: str = "") -> dict[str, bytes]:
    return {
        f"{prefix}dogs/d2.png": encode(solid((0, 0, 200)), "PNG"),
        f"{prefix}cats/c1.png": encode(solid((200, 0, 0)), "PNG"),
        f"{prefix}dogs/d1.png": encode(solid((0, 0, 100)), "PNG"),
        f"{prefix}cats/c0.bmp": encode(solid((100, 0, 0)), "BMP"),
    }


@pytest.mark.parametrize("prefix", ["", "dataset/"])
def test_zip_with_class_folders_gives_the_same_labels_as_a_folder(tmp_path, prefix):
    folder = tmp_path / "data"
    make_class_tree(folder)
    archive = make_zip(tmp_path / "data.zip", tree_entries(prefix))
    from_folder = load_images([folder])
    from_zip = load_images([archive], work_dir=tmp_path)
    assert [i.label_name for i in from_zip.items] == ["cats", "cats", "dogs", "dogs"]
    assert [i.label_name for i in from_zip.items] == [i.label_name for i in from_folder.items]
    assert [i.name for i in from_zip.items] == [f"data.zip/{prefix}{n}" for n in
                                                ("cats/c0.bmp", "cats/c1.png", "dogs/d1.png", "dogs/d2.png")]
    for a, b in zip(from_zip.items, from_folder.items, strict=True):
        np.testing.assert_array_equal(a.pixels, b.pixels)
    # The extracted copy lives in a temporary folder that is removed afterwards.
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("images-")] == []


def test_zip_with_explicit_folder_entries_and_macos_junk(tmp_path):
    entries = {"dataset/": b"", "dataset/cats/": b"", "dataset/dogs/": b""}
    entries |= tree_entries("dataset/")
    entries |= {"__MACOSX/dataset/cats/._c1.png": b"\0\5\26\7", "dataset/.DS_Store": b"Bud1",
                "dataset/cats/readme.md": b"# cats"}
    result = load_images([make_zip(tmp_path / "a.zip", entries)], work_dir=tmp_path)
    assert [i.label_name for i in result.items] == ["cats", "cats", "dogs", "dogs"]
    assert result.skipped == ()


def test_loose_file_inside_a_wrapper_folder_is_unlabelled(tmp_path):
    entries = tree_entries("animals/") | {"animals/unsorted.png": encode(solid((7, 7, 7)), "PNG")}
    result = load_images([make_zip(tmp_path / "a.zip", entries)], work_dir=tmp_path)
    labels = {i.name: i.label_name for i in result.items}
    assert labels["a.zip/animals/unsorted.png"] is None
    assert labels["a.zip/animals/cats/c1.png"] == "cats"
    assert set(labels.values()) == {None, "cats", "dogs"}


def test_single_class_folder_keeps_its_label(tmp_path):
    entries = {"cats/a.png": encode(solid((1, 1, 1)), "PNG"), "cats/b.png": encode(solid((2, 2, 2)), "PNG")}
    result = load_images([make_zip(tmp_path / "cats.zip", entries)], work_dir=tmp_path)
    assert [i.label_name for i in result.items] == ["cats", "cats"]


def test_zip_non_image_entries_are_skipped_and_bad_images_reported(tmp_path):
    entries = tree_entries() | {"cats/weights.bin": b"\0" * 10, "dogs/broken.png": b"\x89PNG\r\n\x1a\nxx"}
    result = load_images([make_zip(tmp_path / "z.zip", entries)], work_dir=tmp_path)
    assert len(result.items) == 4
    assert sorted(s.name for s in result.skipped) == ["z.zip/cats/weights.bin", "z.zip/dogs/broken.png"]


def test_unsafe_zip_is_an_input_error(tmp_path):
    archive = make_zip(tmp_path / "evil.zip", {"../escape.png": encode(solid((1, 1, 1)), "PNG")})
    with pytest.raises(InputError, match="outside"):
        load_images([archive], work_dir=tmp_path)
    assert not (tmp_path / "escape.png").exists()


def test_mixed_inputs_keep_the_given_order(tmp_path):
    folder = tmp_path / "data"
    make_class_tree(folder)
    single = write(tmp_path / "one.png", encode(solid((3, 3, 3)), "PNG"))
    archive = make_zip(tmp_path / "more.zip", {"x/q.png": encode(solid((4, 4, 4)), "PNG")})
    result = load_images([single, archive, folder], work_dir=tmp_path)
    assert [i.name for i in result.items] == ["one.png", "more.zip/x/q.png", "data/cats/c0.bmp",
                                              "data/cats/c1.png", "data/dogs/d1.png", "data/dogs/d2.png"]


# ----------------------------------------------------------------------------- digest


def test_digest_is_stable_and_sensitive_to_pixels(tmp_path):
    root = tmp_path / "data"
    make_class_tree(root)
    first = load_images([root]).digest()
    assert first == load_images([root]).digest()
    assert len(first) == 64 and int(first, 16) >= 0

    pixels = solid((200, 0, 0))
    pixels[0, 0, 1] = 1  # one channel of one pixel
    write(root / "cats" / "c1.png", encode(pixels, "PNG"))
    assert load_images([root]).digest() != first


def test_digest_is_sensitive_to_labels_names_and_shape():
    base = ImageSet((item("a.png", "cats", 5), item("b.png", "dogs", 6)))
    same = ImageSet((item("a.png", "cats", 5), item("b.png", "dogs", 6)), (SkippedFile("x", "y"),))
    relabelled = ImageSet((item("a.png", "dogs", 5), item("b.png", "dogs", 6)))
    unlabelled = ImageSet((item("a.png", None, 5), item("b.png", "dogs", 6)))
    renamed = ImageSet((item("c.png", "cats", 5), item("b.png", "dogs", 6)))
    reordered = ImageSet((item("b.png", "dogs", 6), item("a.png", "cats", 5)))
    reshaped = ImageSet((ImageItem("a.png", np.full((1, 4, 3), 5, np.uint8), "cats"), item("b.png", "dogs", 6)))
    assert base.digest() == same.digest()
    digests = {s.digest() for s in (base, relabelled, unlabelled, renamed, reordered, reshaped)}
    assert len(digests) == 6


# ----------------------------------------------------------------------------- read_labels_file


def test_text_labels_one_per_line(tmp_path):
    path = write(tmp_path / "labels.txt", "\ufeffcat\n\n  dog  \r\nbig bird\n\n".encode())
    assert read_labels_file(path) == ("cat", "dog", "big bird")


def test_text_labels_with_utf8_bom_from_encoder(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("ünicode\nzwei\n", encoding="utf-8-sig")
    assert read_labels_file(str(path)) == ("ünicode", "zwei")


def test_empty_text_labels_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="empty"):
        read_labels_file(write(tmp_path / "labels.txt", b"\n  \n"))


def test_json_list_labels(tmp_path):
    path = write(tmp_path / "labels.json", json.dumps(["a", "b", "c"]).encode("utf-8-sig"))
    assert read_labels_file(path) == ("a", "b", "c")


def test_json_object_labels_in_index_order(tmp_path):
    path = write(tmp_path / "classes.JSON", json.dumps({"2": "c", "0": "a", "1": "b"}).encode())
    assert read_labels_file(path) == ("a", "b", "c")


@pytest.mark.parametrize("text", [
    '["a", "b"',  # bad JSON
    '{"0": "a", "2": "c"}',  # gap in indices
    '{"1": "a", "2": "b"}',  # does not start at 0
    '{"a": "cat"}',  # not an index
    '{"0": "a", "x": "b"}',
    "[]",
    "{}",
    "[1, 2, 3]",
    '"just a string"',
])
def test_inconsistent_json_labels_are_an_input_error(tmp_path, text):
    with pytest.raises(InputError, match="labels.json"):
        read_labels_file(write(tmp_path / "labels.json", text.encode()))


def test_missing_or_binary_labels_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        read_labels_file(tmp_path / "absent.txt")
    with pytest.raises(InputError, match="cannot read"):
        read_labels_file(write(tmp_path / "bin.txt", b"\xff\xfe\x00\x81\x82"))


# ----------------------------------------------------------------------------- resolve_labels


def test_numeric_folders_are_class_indices():
    labels = resolve_labels(image_set("3", "0", "10", "3"), num_classes=11)
    assert isinstance(labels, Labels)
    assert labels.indices == (3, 0, 10, 3)
    assert labels.known
    assert "indices" in labels.source
    assert labels.class_names == tuple(str(k) for k in range(11))


def test_numeric_folder_out_of_range_is_an_image_error():
    with pytest.raises(ImageError, match="12"):
        resolve_labels(image_set("1", "12"), num_classes=10)


def test_folders_are_matched_to_labels_file_names():
    names = ("tench", "goldfish", "shark")
    labels = resolve_labels(image_set("shark", "tench", "goldfish", "shark"), 3, names)
    assert labels.indices == (2, 0, 1, 2)
    assert labels.class_names == names
    assert "labels file" in labels.source


def test_index_folders_work_with_a_labels_file():
    labels = resolve_labels(image_set("2", "goldfish"), 3, ["tench", "goldfish", "shark"])
    assert labels.indices == (2, 1)


def test_labels_file_names_win_over_reading_folders_as_indices():
    # A labels file whose class names are themselves numbers, in a different order.
    labels = resolve_labels(image_set("0", "2"), 3, ["2", "1", "0"])
    assert labels.indices == (2, 0)


def test_alphabetical_order_without_labels_file():
    labels = resolve_labels(image_set("dog", "cat", "bird", "cat"), num_classes=5)
    assert labels.indices == (2, 1, 0, 1)
    assert labels.class_names == ("bird", "cat", "dog", "class 3", "class 4")
    assert "alphabetical" in labels.source


def test_alphabetical_order_is_case_sensitive_like_keras():
    labels = resolve_labels(image_set("apple", "Zebra"), num_classes=2)
    assert labels.indices == (1, 0)  # sorted(["apple", "Zebra"]) == ["Zebra", "apple"]


def test_more_folders_than_classes_is_an_image_error_naming_them():
    with pytest.raises(ImageError, match="dog") as info:
        resolve_labels(image_set("bird", "cat", "dog"), num_classes=2)
    assert "bird" not in str(info.value)
    assert "\n" not in str(info.value)


def test_labels_file_with_wrong_class_count_is_an_image_error():
    with pytest.raises(ImageError, match="2 names but the model has 3 classes"):
        resolve_labels(image_set("a"), 3, ["a", "b"])


def test_unknown_folder_name_is_an_image_error_naming_it():
    with pytest.raises(ImageError, match="zebra"):
        resolve_labels(image_set("cat", "zebra"), 2, ["cat", "dog"])


def test_unlabelled_images_are_not_known():
    labels = resolve_labels(image_set(None, None), num_classes=4)
    assert labels.indices == (None, None)
    assert not labels.known
    assert labels.class_names == ("0", "1", "2", "3")
    named = resolve_labels(image_set(None), 2, ["cat", "dog"])
    assert named.class_names == ("cat", "dog") and not named.known


def test_partly_labelled_images_are_not_known():
    labels = resolve_labels(image_set("cat", None), 2, ["cat", "dog"])
    assert labels.indices == (0, None)
    assert not labels.known


def test_non_ascii_digit_folder_names_do_not_crash():
    labels = resolve_labels(image_set("1", "\u00b2"), num_classes=2)  # "²".isdigit() but int("²") fails
    assert labels.known and sorted(labels.indices) == [0, 1]


def test_labels_from_a_real_folder_and_labels_file(tmp_path):
    root = tmp_path / "data"
    make_class_tree(root)
    names = read_labels_file(write(tmp_path / "labels.txt", b"dogs\nbirds\ncats\n"))
    labels = resolve_labels(load_images([root]), 3, names)
    assert labels.indices == (2, 2, 0, 0)
    assert labels.known
