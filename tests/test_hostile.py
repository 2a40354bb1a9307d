"""Every hostile input, through the CLI and through the app: one clear line, nothing else happens."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import REPO
from hostile import corpus

os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-hostile-cache-"))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, model_files):
    folder = tmp_path_factory.mktemp("hostile")
    return corpus(folder, model_files["tflite"].read_bytes())


def _names(items):
    return [name for name, *_ in items]


def test_corpus_through_the_cli(hostile, model_files, image_dir, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    before = set(Path(tempfile.gettempdir()).iterdir())
    for name, data, kind, expected in hostile:
        path = work / name
        path.write_bytes(data)
        model, images = (path, image_dir) if kind == "model" else (model_files["keras"], path)
        env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(work))
        proc = subprocess.run([sys.executable, "-m", "quant_core", "compare", str(model), "--images", str(images),
                               "--no-latency", "--modes", "int8"], capture_output=True, text=True, cwd=work,
                              env=env, timeout=600)
        lines = proc.stderr.splitlines()
        assert proc.returncode == 2, (name, proc.returncode, proc.stderr[-500:])
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (name, lines)
        assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not list(tmp_path.rglob("evil*")) and not Path("/tmp/evil.txt").exists()
    leftovers = {p for p in set(Path(tempfile.gettempdir()).iterdir()) - before
                 if p.name.startswith(("images-", "savedmodel-"))}
    assert not leftovers
    assert sorted(p.name for p in work.iterdir()) == sorted(_names(hostile))  # nothing else written


def test_corpus_through_the_app(hostile, model_files, image_dir):
    from streamlit.testing.v1 import AppTest

    good_images = [(p.name, p.read_bytes(), "image/png") for p in sorted(image_dir.rglob("*.png"))[:6]]
    good_model = ("tiny.keras", model_files["keras"].read_bytes(), "application/octet-stream")
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=600)
    at.run()
    at.radio(key="w.source").set_value("Upload my own").run()
    for name, data, kind, expected in hostile:  # the uploaders take any type: a wrong one is refused in one line
        model = (name, data, "application/octet-stream") if kind == "model" else good_model
        images = good_images if kind == "model" else [(name, data, "application/octet-stream")]
        at.file_uploader[0].set_value(model)
        at.file_uploader[1].set_value(images)
        next(b for b in at.button if b.label == "Use these files").click().run()
        assert not at.exception, (name, [e.value for e in at.exception])
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and expected in errors[0] and "\n" not in errors[0], (name, errors)
    # the same session still works with good files afterwards
    at.file_uploader[0].set_value(good_model)
    at.file_uploader[1].set_value(good_images)
    next(b for b in at.button if b.label == "Use these files").click().run()
    assert not at.error and {m.label: m.value for m in at.metric}["Classes"] == "3"


@pytest.mark.parametrize(("model", "images", "labels", "expected"), [
    ("weights.pt", ["a.png"], None, "weights.pt: unsupported model file; expected .keras, .h5 or .hdf5"),
    ("model.keras", ["a.png", "notes.docx"], None, "notes.docx: not an image; expected .bmp, .gif, .jpeg"),
    ("model.keras", ["a.png"], "classes.csv", "classes.csv: not a labels file; expected .txt"),
])
def test_a_file_of_another_type_is_refused_in_one_line_naming_the_accepted_types(
        model, images, labels, expected, model_files, image_dir):
    from streamlit.testing.v1 import AppTest

    png = next(image_dir.rglob("*.png")).read_bytes()
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=600)
    at.run()
    at.radio(key="w.source").set_value("Upload my own").run()
    at.file_uploader[0].set_value((model, model_files["keras"].read_bytes(), "application/octet-stream"))
    at.file_uploader[1].set_value([(name, png, "application/octet-stream") for name in images])
    if labels:
        at.file_uploader[2].set_value((labels, b"red\ngreen\nblue\n", "text/csv"))
    next(b for b in at.button if b.label == "Use these files").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith(expected) and "\n" not in errors[0], errors


def test_a_legacy_hdf5_model_is_accepted_like_h5(model_files, image_dir):
    from streamlit.testing.v1 import AppTest

    images = [(p.name, p.read_bytes(), "image/png") for p in sorted(image_dir.rglob("*.png"))[:6]]
    at = AppTest.from_file(str(REPO / "streamlit_app.py"), default_timeout=600)
    at.run()
    at.radio(key="w.source").set_value("Upload my own").run()
    at.file_uploader[0].set_value(("legacy.hdf5", model_files["h5"].read_bytes(), "application/x-hdf5"))
    at.file_uploader[1].set_value(images)
    next(b for b in at.button if b.label == "Use these files").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Classes"] == "3" and metrics["Format"] == "h5"
