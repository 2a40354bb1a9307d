"""The whole comparison: result contents, checks, progress, and the content-addressed cache."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import CLASSES
from quant_core import builders, metrics
from quant_core.compare import _RETIME_ROUNDS, CompareOptions, CompareRequest, Progress, run_compare
from quant_core.errors import ImageError
from quant_core.inputs.preprocess import Normalization, PreprocessingOverride, Preset
from quant_core.modes import Backend, Mode
from quant_core.recipe import CalibrationSource, Recipe
from quant_core.results.compare_result import CompareResult, Status
from quant_core.results.report import report_dict, variants_csv


def _request(model_files, image_dir, labels_file=None, **options):
    options.setdefault("measure_latency", False)
    return CompareRequest(str(model_files["keras"]), (str(image_dir),), str(labels_file) if labels_file else None,
                          CompareOptions(**options))


@pytest.fixture(scope="module")
def full_result(model_files, image_dir, labels_file, tmp_path_factory):
    from quant_core.cache import ArtifactCache

    cache = ArtifactCache(tmp_path_factory.mktemp("compare-cache"))
    events: list[Progress] = []
    result = run_compare(_request(model_files, image_dir, labels_file, measure_latency=True, threads=2),
                         cache=cache, on_progress=events.append)
    return result, events, cache


def test_full_comparison_has_every_variant_with_measurements(full_result):
    result, _, _ = full_result
    assert [v.name for v in result.variants] == [m.value for m in Mode]
    assert all(v.ok for v in result.variants), [(v.name, v.error) for v in result.variants if not v.ok]
    assert result.labelled and result.class_names == CLASSES
    assert result.baseline is result.variant("float32") and result.baseline.mode is Mode.FLOAT32
    assert all(v.status is Status.OK for v in result.variants)
    assert CompareResult.from_dict(json.loads(json.dumps(result.to_dict()))).variants[0].status is Status.OK
    assert result.source_accuracy >= 0.9
    assert result.preprocessing.normalization.preset is Preset.RAW
    assert "Rescaling" in result.preprocessing.source
    for v in result.variants:
        assert v.latency.threads == 2 and v.latency.runs >= 15 and v.latency.warmup > 0
        assert 0 < v.latency.median_ms <= v.latency.p90_ms
        assert v.size_bytes > 0 and len(v.tflite_sha256) == 64
    sizes = {v.name: v.size_ratio for v in result.variants}
    assert sizes["float32"] == 1.0 and sizes["int8"] < 0.75 and sizes["float16"] < 0.9
    assert result.environment.threads == 2
    assert any(name.startswith("tensorflow") for name, _ in result.environment.packages)
    assert any("ARM" in note or "phones" in note for note in result.environment.notes)


def test_progress_is_reported_monotonically(full_result):
    _, events, _ = full_result
    fractions = [e.fraction for e in events]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    assert {e.variant for e in events if e.variant} == {m.value for m in Mode}


def test_report_json_contract(full_result, tmp_path):
    result, _, cache = full_result
    paths = result.save(tmp_path / "out", cache)
    report = json.loads(json.dumps(report_dict(result, tflite_paths=paths)))
    assert {"name", "input_shape", "num_classes", "sha256"} <= set(report["model"])
    assert report["model"]["num_classes"] == 3
    assert report["environment"]["packages"]
    for v in report["variants"]:
        assert {"mode", "status", "error", "size_bytes", "size_ratio", "latency_ms", "top1_agreement", "accuracy",
                "ops", "integer_only", "tflite"} <= set(v)
        assert {"median", "p90"} <= set(v["latency_ms"])
        assert {"total", "float", "int8", "int16"} <= set(v["ops"])
        assert v["tflite"].endswith(f"tiny_{v['mode']}.tflite")
        recipe = json.loads((tmp_path / "out" / f"tiny_{v['mode']}.recipe.json").read_text())
        assert recipe["recipe"]["mode"] == v["mode"] and recipe["backend_settings"]["backend"]
        assert v["backend_settings"] == recipe["backend_settings"] and "engine_settings" not in v
    assert report["report_version"] == 3
    assert len(report["images"]) == 24
    first = report["images"][0]
    assert first["label"] in CLASSES
    assert set(first["predictions"]) == {m.value for m in Mode}
    assert all({"label", "prob"} <= set(p) for p in first["predictions"]["int8"])
    csv = variants_csv(result).splitlines()
    assert csv[0].startswith("mode,status,size_bytes") and len(csv) == 1 + len(Mode)


def test_result_round_trips_through_json(full_result):
    result, _, _ = full_result
    again = CompareResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result


def test_a_result_stored_with_the_former_engine_settings_key_still_reads(full_result):
    result, _, _ = full_result
    stored = json.loads(json.dumps(result.to_dict()))
    for v in stored["variants"]:  # as results were cached and published before the rename
        settings = v.pop("backend_settings")
        v["engine_settings"] = {("engine" if k == "backend" else k): x for k, x in settings.items()}
        assert "engine" in v["engine_settings"]
    again = CompareResult.from_dict(stored)
    assert again == result
    assert "TFLiteConverter" in again.variant("int8").backend_settings["backend"]


def test_identical_request_is_served_from_cache_without_building(full_result, model_files, image_dir, labels_file,
                                                                monkeypatch):
    result, _, cache = full_result

    def refuse(*args, **kwargs):
        raise AssertionError("a cached request must not build anything")

    monkeypatch.setattr("quant_core.compare.load_model", refuse)
    monkeypatch.setattr("quant_core.compare.build_variant", refuse)
    again = run_compare(_request(model_files, image_dir, labels_file, measure_latency=True, threads=2), cache=cache)
    assert again == result


def test_a_changed_option_never_returns_a_stale_model(model_files, image_dir, cache):
    base = run_compare(_request(model_files, image_dir, recipes=(Recipe(Mode.INT8, calibration_count=4),)),
                       cache=cache)
    changed = run_compare(_request(model_files, image_dir, recipes=(Recipe(Mode.INT8, calibration_count=8),)),
                          cache=cache)
    per_tensor = run_compare(_request(model_files, image_dir, recipes=(Recipe(Mode.INT8, calibration_count=4,
                                                                             per_channel=False),)), cache=cache)
    shas = {r.variant("int8").tflite_sha256 for r in (base, changed, per_tensor)}
    assert len(shas) == 3
    assert changed.variant("int8").calibration_samples == 8
    # variant files are content-addressed: rebuilding the first recipe reuses its file
    again = run_compare(_request(model_files, image_dir, recipes=(Recipe(Mode.INT8, calibration_count=4),),
                                 top_k=2), cache=cache)
    assert again.variant("int8").tflite_sha256 == base.variant("int8").tflite_sha256
    assert again.variant("int8").build_seconds == 0.0


def test_changed_model_bytes_invalidate_the_cache(model_files, image_dir, cache, tmp_path, tiny_model):
    first = run_compare(_request(model_files, image_dir, recipes=(Recipe(Mode.FLOAT32),)), cache=cache)
    import keras

    other = keras.models.clone_model(tiny_model)
    other.set_weights([w * 0.5 for w in tiny_model.get_weights()])
    path = tmp_path / "tiny.keras"
    other.save(path)
    second = run_compare(CompareRequest(str(path), (str(image_dir),), options=CompareOptions(
        recipes=(Recipe(Mode.FLOAT32),), measure_latency=False)), cache=cache)
    assert first.model.sha256 != second.model.sha256
    assert first.variant("float32").tflite_sha256 != second.variant("float32").tflite_sha256


def test_float32_is_always_the_baseline(model_files, image_dir, cache):
    result = run_compare(_request(model_files, image_dir, recipes=(Recipe(Mode.INT8),)), cache=cache)
    assert [v.name for v in result.variants] == ["float32", "int8"]


def test_random_calibration_is_labelled_as_a_what_if(model_files, image_dir, cache):
    from quant_core.recipe import CalibrationSource

    result = run_compare(_request(model_files, image_dir, recipes=(
        Recipe(Mode.INT8, calibration_source=CalibrationSource.RANDOM),)), cache=cache)
    assert result.calibration.what_if and "what-if" in result.calibration.source


def test_normalization_override_is_used_and_recorded(model_files, image_dir, cache):
    result = run_compare(_request(model_files, image_dir, recipes=(Recipe(Mode.FLOAT32),),
                                  preprocessing=PreprocessingOverride(normalization=Normalization.of("0,1"))),
                         cache=cache)
    assert result.preprocessing.normalization == Normalization.of(Preset.ZERO_ONE)
    assert result.preprocessing.source == "chosen by the user"
    assert result.source_accuracy < 0.7  # feeding [0,1] to a model that rescales itself ruins it: shown, not hidden


def test_range_is_inferred_from_labels_without_a_rescaling_layer(tmp_path, image_dir, labels_file, cache):
    import keras

    keras.utils.set_random_seed(0)
    from conftest import colour_images

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 1, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    images, labels = colour_images(240, seed=2)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(images / 127.5 - 1.0, labels, epochs=40, verbose=0)  # trained on [-1, 1]
    path = tmp_path / "norescale.keras"
    model.save(path)
    result = run_compare(CompareRequest(str(path), (str(image_dir),), str(labels_file), options=CompareOptions(
        recipes=(Recipe(Mode.FLOAT32),), measure_latency=False)), cache=cache)
    assert result.preprocessing.normalization.preset is Preset.MINUS_ONE_ONE
    assert "best accuracy on your labelled images: [-1,1], 1.00 against" in result.preprocessing.source
    assert result.source_accuracy == 1.0


def test_unlabelled_images_give_no_accuracy(model_files, image_dir, cache, tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    for path in sorted(image_dir.rglob("*.png"))[:5]:
        shutil.copy(path, loose / f"{path.parent.name}_{path.name}")
    result = run_compare(_request(model_files, loose, recipes=(Recipe(Mode.INT8),)), cache=cache)
    assert not result.labelled and result.source_accuracy is None
    assert all(v.accuracy is None for v in result.variants)
    assert result.variant("int8").top1_agreement is not None


def test_class_folders_that_do_not_match_the_model_are_refused(model_files, tmp_path, image_dir, cache):
    bad = tmp_path / "bad"
    for k, name in enumerate(["a", "b", "c", "d"]):
        (bad / name).mkdir(parents=True)
        shutil.copy(next(image_dir.rglob("*.png")), bad / name / f"{k}.png")
    with pytest.raises(ImageError, match="do not match any of the model's 3 classes"):
        run_compare(_request(model_files, bad), cache=cache)


def test_collapsed_and_nan_outputs_are_detected():
    ref = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert metrics.collapse_reason(np.array([[0.5, 0.5], [0.5, 0.5]]), ref).startswith("outputs collapsed")
    assert "NaN" in metrics.collapse_reason(np.array([[np.nan, 0.5], [0.5, 0.5]]), ref)
    assert metrics.collapse_reason(ref * 0.99 + 0.005, ref) is None


def test_a_backend_failure_fails_that_variant_while_others_succeed(model_files, image_dir, cache, monkeypatch):
    def backend_refuses(*args, **kwargs):
        raise RuntimeError("tflite/kernels/kernel_util.cc:349 check failed\n<MLIR dump>")

    from tensorflow.lite.python import convert  # the backend call inside the int8 builder

    monkeypatch.setattr(convert, "mlir_quantize", backend_refuses)
    chosen = Recipe(Mode.INT8, backend=Backend.TF_CONVERTER)  # chosen: "best per mode" would try the other backend
    result = run_compare(_request(model_files, image_dir, recipes=(Recipe(Mode.INT16X8), chosen)), cache=cache)
    assert result.variant("int16x8").ok
    failed = result.variant("int8")
    assert not failed.ok and failed.size_bytes is None
    assert failed.error == "tf_converter failed: tflite/kernels/kernel_util.cc:349 check failed"
    fallback = run_compare(_request(model_files, image_dir, recipes=(Recipe(Mode.INT8),)), cache=cache)
    assert fallback.variant("int8").ok and fallback.variant("int8").recipe.backend is Backend.LITERT_QUANTIZER


def test_a_bug_in_a_builder_is_not_passed_off_as_a_failed_variant(model_files, image_dir, cache, monkeypatch):
    def buggy_builder(source, recipe, *args):
        return {"per_channel": recipe.per_channel}["per_chanel"]

    monkeypatch.setitem(builders._REGISTRY, (Mode.INT8, builders.Backend.TF_CONVERTER), buggy_builder)
    with pytest.raises(KeyError, match="per_chanel"):
        run_compare(_request(model_files, image_dir, recipes=(Recipe(Mode.INT8),)), cache=cache)


def test_nan_variant_is_failed_not_shown(model_files, image_dir, cache, monkeypatch):
    from quant_core.compare import Workbench
    from quant_core.inputs.images import load_images

    bench = Workbench.open(model_files["keras"], load_images([image_dir]),
                           options=CompareOptions(measure_latency=False), cache=cache)
    original = metrics.to_probabilities
    monkeypatch.setattr("quant_core.compare.metrics.to_probabilities", lambda raw, kind: original(raw, kind) * np.nan)
    v = bench.evaluate(Recipe(Mode.INT8))
    assert not v.ok and v.error == "outputs contain NaN or infinity"
    assert v.size_bytes is None and not v.topk


def test_low_agreement_gets_a_plain_language_warning():
    from quant_core.compare import _agreement_warning

    assert _agreement_warning(Recipe(Mode.INT8), 0.95) is None
    text = _agreement_warning(Recipe(Mode.INT8), 0.5)
    assert text.startswith("changes the top-1 prediction on 50% of images") and "calibration" in text
    assert "weight_only" in _agreement_warning(Recipe(Mode.DYNAMIC_RANGE), 0.1)
    # A what-if's warning names the setting that was changed, and only the settings the mode uses.
    per_tensor = _agreement_warning(Recipe(Mode.DYNAMIC_RANGE, per_channel=False,
                                           calibration_source=CalibrationSource.RANDOM), 0.1)
    assert "per-tensor weights (changed from the defaults)" in per_tensor and "calibration" not in per_tensor
    noise = _agreement_warning(Recipe(Mode.INT8, calibration_source=CalibrationSource.RANDOM, calibration_count=8), 0.3)
    assert "random calibration data and at most 8 calibration images" in noise and "per-tensor" not in noise


def test_a_shared_cached_result_never_reveals_another_users_names_or_folders(model_files, image_dir, cache, tmp_path):
    """Two users upload identical bytes under different names from their own folders."""
    def user(name: str, model_name: str, junk_name: str):
        folder = tmp_path / name
        shutil.copytree(image_dir, folder / "images")
        (folder / "images" / "red" / junk_name).write_bytes(b"not an image")  # skipped, and named in the result
        model = folder / model_name
        shutil.copy(model_files["keras"], model)
        request = CompareRequest(str(model), (str(folder / "images"),), options=CompareOptions(
            recipes=(Recipe(Mode.FLOAT32),), measure_latency=False))
        return folder, run_compare(request, cache=cache, work_dir=folder)

    alice_dir, alice = user("alice", "alice_secret_model.keras", "alice_notes.png")
    bob_dir, bob = user("bob", "bob_model.keras", "bob_notes.png")
    text = json.dumps(bob.to_dict())
    assert "alice" not in text and str(alice_dir) not in text
    assert bob.model.name == "bob_model" and [s.name for s in bob.skipped] == ["images/red/bob_notes.png"]
    assert str(bob_dir) not in json.dumps(alice.to_dict())
    # the built variant itself is shared: same content, same cached file
    assert bob.variant("float32").tflite_sha256 == alice.variant("float32").tflite_sha256


def test_the_result_on_screen_lends_its_unchanged_variants_to_a_what_if(model_files, image_dir, cache):
    shown = run_compare(_request(model_files, image_dir, recipes=(Recipe(Mode.INT8), Recipe(Mode.FLOAT16)),
                                 measure_latency=True), cache=cache)
    what_if = run_compare(_request(model_files, image_dir, measure_latency=True,
                                   recipes=(Recipe(Mode.INT8), Recipe(Mode.FLOAT16), Recipe(Mode.DYNAMIC_RANGE))),
                          cache=cache, earlier=shown)
    for name in ("float32", "int8", "float16"):
        assert what_if.variant(name) == shown.variant(name)  # the same rows, timings included
    assert what_if.variant("dynamic_range").ok
    other_threads = run_compare(_request(model_files, image_dir, measure_latency=True, threads=2,
                                         recipes=(Recipe(Mode.INT8),)), cache=cache, earlier=shown)
    assert other_threads.variant("int8").latency.threads == 2  # another setup: measured anew


def test_rows_stream_in_first_and_latency_fills_in_afterwards(full_result):
    """Each variant's numbers are reported as soon as they are known; timing every variant comes after."""
    from dataclasses import replace

    result, events, _ = full_result
    names = [m.value for m in Mode]
    partials = [e.partial for e in events if e.partial is not None]
    measured, timed = partials[:len(names)], partials[len(names):]
    assert [[v.name for v in p.variants] for p in measured] == [names[:k] for k in range(1, len(names) + 1)]
    assert all(v.latency is None for p in measured for v in p.variants)  # no timing held a row back
    first, again = timed[:len(names)], timed[len(names):]  # then each round timing again what is too close to call
    assert [sum(v.latency is not None for v in p.variants) for p in first] == list(range(1, len(names) + 1))
    assert len(again) <= _RETIME_ROUNDS
    assert all(p.variants[k].latency.runs >= v.latency.runs for p in again for k, v in enumerate(first[-1].variants))
    assert timed[-1].variants == result.variants
    final = {v.name: v for v in result.variants}
    for p in partials:  # a streamed row's numbers are the final ones; only latency was still to come
        assert all(replace(v, latency=None) == replace(final[v.name], latency=None) for v in p.variants)


def test_a_cancel_stops_the_request_instead_of_failing_a_variant(model_files, image_dir, cache):
    from quant_core.errors import Cancelled

    def supersede_at_int8(progress: Progress) -> None:
        if progress.message == "Building int8":
            raise Cancelled("stopped: a newer request replaced this one")

    recipes = (Recipe(Mode.FLOAT32), Recipe(Mode.INT8), Recipe(Mode.FLOAT16))
    with pytest.raises(Cancelled):
        run_compare(_request(model_files, image_dir, recipes=recipes, top_k=4), cache=cache,
                    on_progress=supersede_at_int8)
    later = run_compare(_request(model_files, image_dir, recipes=recipes, top_k=4), cache=cache)
    assert all(v.ok for v in later.variants)  # nothing half-done was stored
