"""A corpus of hostile and broken inputs, generated on the spot (never downloaded).

Each entry is (file name, bytes, kind, expected message fragment), kind being "model"
(used with valid images) or "images" (used with the valid tiny model).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

from PIL import Image


def _zip(entries: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _png(size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "red").save(buf, format="PNG")
    return buf.getvalue()


def _png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring 10 gigapixels, with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def _keras_models(tmp: Path) -> list[tuple[str, bytes, str, str]]:
    import keras

    out = []
    inputs = keras.Input((16, 16, 3))
    lam = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(
        keras.layers.Lambda(lambda t: t * 2.0)(inputs))))
    for suffix in (".keras", ".h5"):
        path = tmp / f"lambda{suffix}"
        lam.save(path)
        out.append((path.name, path.read_bytes(), "model", "Lambda layer"))
    a, b = keras.Input((16, 16, 3)), keras.Input((16, 16, 3))
    two = keras.Model([a, b], keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.Add()([a, b]))))
    path = tmp / "two_inputs.keras"
    two.save(path)
    out.append((path.name, path.read_bytes(), "model", "2 inputs"))
    return out


def _reader_saved_model(tmp: Path) -> bytes:
    import tensorflow as tf

    class Reader(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 16, 16, 3], tf.float32)])
        def serve(self, x):
            leak = tf.strings.length(tf.io.read_file("/etc/hostname"))
            return {"scores": tf.reduce_mean(x, axis=[1, 2]) + tf.cast(leak, tf.float32)}

    module = Reader()
    folder = tmp / "reader"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return _zip({f"reader/{p.relative_to(folder).as_posix()}": p.read_bytes()
                 for p in folder.rglob("*") if p.is_file()})


def corpus(tmp: Path, valid_tflite: bytes) -> list[tuple[str, bytes, str, str]]:
    """Every hostile input with its expected one-line message fragment."""
    bomb = _zip({"model/saved_model.pb": b"\0" * (60 * 1024 * 1024)})
    return [
        *_keras_models(tmp),
        ("garbage.keras", b"PK\x03\x04 not really a zip", "model", "not a valid .keras"),
        ("empty.h5", b"", "model", "cannot load the model"),
        ("truncated.tflite", valid_tflite[: len(valid_tflite) // 3], "model", "cannot load"),
        ("random.tflite", bytes(range(256)) * 8, "model", "cannot load"),
        ("slip.zip", _zip({"../../evil.txt": b"owned", "m/saved_model.pb": b"x"}), "model", "outside the archive"),
        ("absolute.zip", _zip({"/tmp/evil.txt": b"owned"}), "model", "outside the archive"),
        ("link.zip", _zip({"m/saved_model.pb": b"x"}, symlink="m/variables"), "model", "link or special file"),
        ("bomb.zip", bomb, "model", "zip bomb"),
        ("reader.zip", _reader_saved_model(tmp), "model", "ReadFile"),
        ("model.onnx", b"\x08\x07onnx", "model", "unsupported model file"),
        ("bomb.png", _png_bomb(), "images", "no usable images"),
        ("truncated.png", _png()[:40], "images", "no usable images"),
        ("empty.png", b"", "images", "no usable images"),
        ("text.png", b"hello, I am not an image", "images", "no usable images"),
        ("slip_images.zip", _zip({"../evil.png": _png()}), "images", "outside the archive"),
        ("bomb_images.zip", _zip({"a/big.png": b"\0" * (60 * 1024 * 1024)}), "images", "zip bomb"),
    ]
