"""The web app through Streamlit's AppTest: every page, the sample journey, uploads, refusals, persistence."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile

import pytest
from PIL import Image

from conftest import REPO

os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-apptest-cache-"))
from streamlit.testing.v1 import AppTest

APP = str(REPO / "streamlit_app.py")
PAGES = ["pages/model_data.py", "pages/quantize.py", "pages/compare.py", "pages/layers.py", "pages/ops.py",
         "pages/evaluate.py", "pages/report.py"]
ALL_MODES = ["float32", "weight_only", "dynamic_range", "float16", "int8", "int8_float_io", "int16x8"]


def new_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def no_failures(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture(scope="module")
def sample_run() -> AppTest:
    """The one-click journey on the default bundled sample."""
    at = new_app()
    assert at.title[0].value == "Model & data"
    next(b for b in at.button if b.label == "Run the full comparison").click().run(timeout=900)
    at.run()  # the follow-up run a browser's timer starts after Compare's first paint: charts and images
    no_failures(at)
    return at


def test_first_screen_explains_and_offers_the_sample():
    at = new_app()
    assert "Compare every post-training quantization" in at.markdown[0].value
    assert {m.label: m.value for m in at.metric} == {"Input": "224×224×3", "Classes": "1000",
                                                      "Parameters": "3,538,984", "Format": "keras"}
    assert "What we understood: mobilenet_v2_imagenet" in [s.value for s in at.subheader]
    assert any("ImageNet mean/std" in e.label for e in at.expander)  # inferred from its BatchNorm statistics
    assert any(b.label == "Run the full comparison" for b in at.button)
    assert not at.error


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_from_the_entry_point(page):
    at = new_app()
    at.switch_page(page).run()
    no_failures(at)
    assert at.title[0].value in {"Model & data", "Quantize", "Compare", "Layers", "Ops", "Full dataset",
                                 "Report & share"}
    if page in ("pages/compare.py", "pages/layers.py", "pages/ops.py", "pages/evaluate.py", "pages/report.py"):
        assert "No comparison yet" in at.info[0].value  # a helpful empty state, not an error


def test_sample_journey_compares_every_variant(sample_run):
    at = sample_run
    assert at.title[0].value == "Compare"
    table = at.table[0].value
    assert list(table["variant"]) == ALL_MODES
    assert (table["status"] == "ok").all()
    assert table.set_index("variant").loc["int8", "integer-only"] == "yes"
    assert table.set_index("variant").loc["int8", "x smaller"] > 1.5
    assert len(at.get("plotly_chart")) >= 4  # size, latency, quality, trade-off
    assert {"top-5 agreement", "accuracy", "top-5 accuracy", "mean |Δp|"} <= set(table.columns)
    result = at.session_state["qw.result"]
    # Where quantization costs accuracy is visible: some variant changes a prediction, and the grid shows it first.
    assert table["agreement"].min() < 1.0
    assert any("have at least one variant disagreeing with float32" in c.value for c in at.caption)
    assert any("With 22 images one image is 4.5 points of accuracy" in c.value for c in at.caption)
    grid = next(h.value for h in at.get("html") if "data-qw-grid" in h.value)
    assert "≠ float32" in grid and "espresso" in grid  # top-5 class names per image and variant
    # 1000 classes: the mistakes of the chosen variant are listed instead of an unreadable confusion matrix.
    assert "Mistakes" in [s.value for s in at.subheader]
    mistakes = at.dataframe[-1].value
    float32 = result.variant("float32")
    wrong = sum(p != i.label_index for p, i in zip(float32.top1, result.images))
    assert len(mistakes) == wrong > 0 and set(mistakes["true class"]) <= {i.label for i in result.images}


def test_results_survive_page_changes_and_feed_every_page(sample_run):
    at = sample_run
    at.switch_page("pages/ops.py").run()
    no_failures(at)
    assert any("integer-only" in e.label for e in at.expander)
    at.switch_page("pages/report.py").run()
    no_failures(at)
    labels = [d.label for d in at.get("download_button")]
    assert {"HTML report", "Numbers (JSON)", "Numbers (CSV)", "All models + recipes (.zip)"} <= set(labels)
    assert labels.count(".tflite") == len(ALL_MODES)
    assert "sample=mobilenet_v2_imagenet" in at.code[0].value
    at.switch_page("pages/model_data.py").run()
    at.switch_page("pages/compare.py").run()
    assert list(at.table[0].value["variant"]) == ALL_MODES


def test_a_repeated_run_is_answered_from_the_cache_without_any_worker(sample_run, monkeypatch):
    from ui import engine

    class NoWorkers:
        def run(self, *args, **kwargs):
            raise AssertionError("a cached request must not reach a worker")  # an incident: the test fails

    monkeypatch.setattr(engine, "warm_pool", NoWorkers)
    at = sample_run
    at.switch_page("pages/model_data.py").run()
    next(b for b in at.button if b.label == "Run the full comparison").click().run(timeout=300)
    no_failures(at)
    assert at.title[0].value == "Compare" and list(at.table[0].value["variant"]) == ALL_MODES


def test_report_downloads_work_after_the_cache_was_cleaned(sample_run):
    """The shared cache may drop any file; what a live session shows stays downloadable (kept in its folder)."""
    import hashlib
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from ui.share import models_zip

    at = sample_run
    shutil.rmtree(Path(os.environ["QUANT_CACHE_DIR"]) / "models")  # evict every model file
    at.switch_page("pages/report.py").run()
    no_failures(at)
    labels = [d.label for d in at.get("download_button")]
    assert labels.count(".tflite") == labels.count("recipe .py") == len(ALL_MODES)  # the script rebuilding each
    result, models = at.session_state["qw.result"], at.session_state["qw.models"]
    with zipfile.ZipFile(io.BytesIO(models_zip(result, models))) as zf:
        for v in result.variants:
            model = zf.read(f"mobilenet_v2_imagenet_{v.name}.tflite")
            assert hashlib.sha256(model).hexdigest() == v.tflite_sha256
            recipe = zf.read(f"mobilenet_v2_imagenet_{v.name}.recipe.json").decode()
            assert '"tflite_sha256": "' + v.tflite_sha256 in recipe
        script = zf.read("mobilenet_v2_imagenet_int8.recipe.py")
    # The int8 script, downloaded, rebuilds the identical file in a fresh process that has no workbench.
    work = Path(tempfile.mkdtemp(prefix="qw-recipe-"))
    (work / "rebuild.py").write_bytes(script)
    out = work / "int8.tflite"
    proc = subprocess.run([sys.executable, "rebuild.py", "--model", str(REPO / "sample_models" /
                                                                       "mobilenet_v2_imagenet.keras"),
                           "--images", str(REPO / "sample_models" / "imagenet_images"), "-o", str(out)],
                          cwd=work, capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert hashlib.sha256(out.read_bytes()).hexdigest() == result.variant("int8").tflite_sha256


def test_the_quantize_page_names_the_converter_choice_backend():
    at = new_app()
    at.switch_page("pages/quantize.py").run()
    no_failures(at)
    box = at.selectbox(key="w.backend")
    assert box.label == "Backend" and box.value is None  # "Best per mode"
    assert "converter backend" in box.help and "engine" not in box.help.lower()
    assert not [s.label for s in at.selectbox if "engine" in s.label.lower()]


def test_quantize_page_runs_selected_variants(model_files, image_dir):
    at = new_app()
    at.switch_page("pages/quantize.py").run()
    for mode in ALL_MODES[1:]:
        at.checkbox(key=f"w.mode.{mode}").set_value(mode in ("int8", "float16"))
    at.slider(key="w.cal_count").set_value(20)
    at.run()
    at.button(key="w.run").click().run(timeout=600)  # lands on Compare, which follows the run to its end
    no_failures(at)
    assert at.title[0].value == "Compare"
    assert list(at.table[0].value["variant"]) == ["float32", "float16", "int8"]
    assert all(at.table[0].value["status"] == "ok")


@pytest.mark.internal_error
def test_a_bug_is_shown_as_an_internal_error_with_its_incident_id(monkeypatch, no_internal_errors):
    monkeypatch.setenv("QW_JOB_MODULES", "tests.broken_builder")  # workers get an int8 builder with a typo
    monkeypatch.chdir(REPO)
    at = new_app()
    at.switch_page("pages/quantize.py").run()
    for mode in ALL_MODES[1:]:
        at.checkbox(key=f"w.mode.{mode}").set_value(mode == "int8")
    at.slider(key="w.cal_count").set_value(13)  # a request no earlier test cached
    at.run()
    at.button(key="w.run").click().run(timeout=600)
    no_failures(at)  # no traceback on the page...
    (incident,) = [r.args[0] for r in no_internal_errors.records]
    shown = [e.value for e in at.error]
    assert shown and shown[0].startswith(f"internal error, logged as {incident}. This is a bug in the workbench")
    assert "KeyError: 'per_chanel'" in no_internal_errors.format(no_internal_errors.records[0])  # ...the log has it
    assert not at.success  # and nothing claims the run went well


def _png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
    return buf.getvalue()


def _upload(at: AppTest, model: tuple[str, bytes], images: list[tuple[str, bytes]]) -> AppTest:
    at.radio(key="w.source").set_value("Upload my own").run()
    uploaders = at.file_uploader
    uploaders[0].set_value((model[0], model[1], "application/octet-stream"))
    uploaders[1].set_value([(n, b, "image/png") for n, b in images])
    next(b for b in at.button if b.label == "Use these files").click().run(timeout=300)
    return at


def test_upload_of_a_model_and_class_zip(model_files, image_dir):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(image_dir.rglob("*.png")):
            zf.write(path, path.relative_to(image_dir.parent))
    at = _upload(new_app(), ("tiny.keras", model_files["keras"].read_bytes()), [("colours.zip", buf.getvalue())])
    no_failures(at)
    assert not at.error, [e.value for e in at.error]
    assert {m.label: m.value for m in at.metric}["Classes"] == "3"
    assert "Images: 24" in [s.value for s in at.subheader]
    next(b for b in at.button if b.label == "Run the full comparison").click().run(timeout=600)
    no_failures(at)
    assert list(at.table[0].value["variant"]) == ALL_MODES


@pytest.mark.parametrize("model,images,message", [
    (("broken.keras", b"not a model"), [("a.png", _png("red"))], "not a valid .keras file"),
    (("model.tflite", b"\x00" * 32), [("a.png", _png("red"))], "cannot load"),
    ("tiny", [("a.png", b"not an image")], "no usable images found"),
])
def test_bad_uploads_are_refused_with_one_line(model, images, message, model_files):
    if model == "tiny":
        model = ("tiny.keras", model_files["keras"].read_bytes())
    at = _upload(new_app(), model, images)
    no_failures(at)
    assert len(at.error) == 1 and message in at.error[0].value
    assert "\n" not in at.error[0].value and "Traceback" not in at.error[0].value


def test_lambda_upload_is_refused(tmp_path):
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Flatten()(keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, keras.layers.Dense(3)(x)).save(path)
    at = _upload(new_app(), ("lambda.keras", path.read_bytes()), [("a.png", _png("red"))])
    assert len(at.error) == 1 and "Lambda layer" in at.error[0].value


def test_a_ten_class_sample_shows_its_confusion_matrix():
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params.update({"sample": "digits_cnn", "modes": "float32,int8"})
    at.run()
    next(b for b in at.button if b.label == "Run the full comparison").click().run(timeout=600)
    at.run()  # Compare's follow-up run (its first paint is the verdict and the summary table)
    no_failures(at)
    confusion = at.table[1].value  # the selected variant's confusion matrix: every labelled image once
    assert confusion.shape == (10, 10) and int(confusion.to_numpy().sum()) == len(at.session_state["qw.result"].images)
    assert any("Confusion matrix: float32" in c.value for c in at.caption)


def test_share_link_preselects_sample_and_options():
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params.update({"sample": "digits_cnn", "modes": "float32,int8", "cal": "40", "per_channel": "0",
                            "norm": "custom", "mean": "0.5", "std": "0.25"})
    at.run()
    no_failures(at)
    assert {m.label: m.value for m in at.metric}["Input"] == "32×32×1"
    assert any(e.label.startswith("Preprocessing: custom mean 0.5, std 0.25") for e in at.expander)
    at.switch_page("pages/quantize.py").run()
    assert at.checkbox(key="w.mode.int8").value and not at.checkbox(key="w.mode.float16").value
    assert at.slider(key="w.cal_count").value == 40
    assert at.toggle(key="w.per_channel").value is False


def test_compare_toggles_change_exactly_the_affected_rows():
    """What-if on Compare: no Run button, no page change; unchanged variants keep their measured numbers."""
    at = new_app()
    next(b for b in at.button if b.label == "Run the full comparison").click().run(timeout=900)
    no_failures(at)
    assert at.title[0].value == "Compare"
    assert sorted(t.label for t in at.toggle if t.key.startswith("w.cmp.mode.")) == sorted(ALL_MODES)  # mode ids
    before = at.session_state["qw.result"]

    at.toggle(key="w.cmp.mode.int16x8").set_value(False).run(timeout=600)
    no_failures(at)
    dropped = at.session_state["qw.result"]
    assert list(at.table[0].value["variant"]) == ALL_MODES[:-1]
    assert all(dropped.variant(n) == before.variant(n) for n in ALL_MODES[:-1])  # nothing rebuilt or re-timed

    at.slider(key="w.cmp.cal_count").set_value(10).run(timeout=600)
    no_failures(at)
    after = at.session_state["qw.result"]
    assert list(at.table[0].value["variant"]) == ALL_MODES[:-1]
    for name in ("float32", "weight_only", "dynamic_range", "float16"):  # calibration does not concern them
        assert after.variant(name) == before.variant(name), name
    for name in ("int8", "int8_float_io"):
        assert after.variant(name).calibration_samples == 10 and before.variant(name).calibration_samples == 22
    assert at.session_state["qw.settings"].calibration_count == 10  # Quantize shows the same choice
