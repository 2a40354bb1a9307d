"""Pure parts of the app: settings <-> share links, upload names, the HTML report."""

from __future__ import annotations

from dataclasses import replace

import pytest

from quant_core import Backend, CalibrationSource, IOType, Mode, Normalization, PreprocessingOverride
from quant_core.errors import InputError
from ui.inputs import safe_name
from ui.settings import Settings
from ui.share import override_from_query, share_query


def test_settings_round_trip_through_a_link():
    s = Settings(modes=(Mode.FLOAT32, Mode.INT8, Mode.INT16X8), calibration_count=33,
                 calibration_source=CalibrationSource.RANDOM, per_channel=False, int8_io=IOType.UINT8,
                 backend=Backend.TF_CONVERTER, threads=2)  # uint8 I/O: the converter (the LiteRT Quantizer refuses)
    query = share_query("digits_cnn", s, PreprocessingOverride(normalization=Normalization.of("0,1")))
    assert query.startswith("?sample=digits_cnn&") and "norm=0%2C1" in query
    from urllib.parse import parse_qsl

    params = dict(parse_qsl(query[1:]))
    assert Settings.from_query(params) == s


@pytest.mark.parametrize("norm", [*Normalization.presets(), Normalization.custom((0.1, 0.2, 0.3), (1 / 3, 0.5, 0.7))])
def test_every_normalization_round_trips_through_a_link(norm):
    from urllib.parse import parse_qsl

    query = share_query("mobilenet_v2_imagenet", Settings(), PreprocessingOverride(normalization=norm))
    assert override_from_query(dict(parse_qsl(query[1:]))) == PreprocessingOverride(normalization=norm)


def test_older_links_with_a_range_still_open_and_bad_ones_are_refused():
    assert override_from_query({"range": "-1,1"}) == PreprocessingOverride(normalization=Normalization.of("-1,1"))
    assert override_from_query({"sample": "digits_cnn"}) is None
    for params in ({"norm": "0..1"}, {"norm": "custom", "mean": "0.5"}, {"norm": "custom", "mean": "a", "std": "1"},
                   {"norm": "custom", "mean": "0.5", "std": "0"}):
        with pytest.raises(InputError):
            override_from_query(params)


def test_default_settings_give_a_short_link():
    assert share_query("digits_cnn", Settings(), PreprocessingOverride()) == "?sample=digits_cnn&run=1"


@pytest.mark.parametrize("params", [{"modes": "int9"}, {"cal": "many"}, {"cal": "0"}, {"backend": "gpu"}])
def test_bad_links_are_refused(params):
    with pytest.raises(InputError):
        Settings.from_query(params)


def test_backend_preference_only_where_a_mode_allows_it():
    recipes = {r.mode: r for r in Settings(backend=Backend.LITERT_QUANTIZER).recipes()}
    assert recipes[Mode.INT8].backend is Backend.LITERT_QUANTIZER and recipes[Mode.INT8].io_type is IOType.INT8
    assert recipes[Mode.INT8_FLOAT_IO].backend is None  # converter only: the default backend
    assert recipes[Mode.FLOAT32].backend is None


def test_the_page_and_the_cli_compile_the_same_recipes_and_both_refuse_uint8_from_the_litert_quantizer():
    """One compiler: the UI no longer drops uint8 I/O silently where the CLI raised."""
    import argparse

    from quant_core.cli import _recipes

    cli_args = argparse.Namespace(backend="litert_quantizer", calibration_count=40, calibration_source="images",
                                  per_tensor=True, int8_io="int8")
    page = Settings(modes=tuple(Mode), backend=Backend.LITERT_QUANTIZER, calibration_count=40, per_channel=False,
                    int8_io=IOType.INT8)
    assert page.recipes() == _recipes(list(Mode), cli_args)
    with pytest.raises(InputError, match="supports I/O types int8, got uint8"):
        replace(page, int8_io=IOType.UINT8).recipes()
    with pytest.raises(InputError, match="supports I/O types int8, got uint8"):
        _recipes(list(Mode), argparse.Namespace(**{**vars(cli_args), "int8_io": "uint8"}))


@pytest.mark.parametrize("name,expected", [("../../etc/passwd", "passwd"), ("a b.png", "a_b.png"),
                                           ("..", "upload"), ("C:\\x\\y.keras", "y.keras"), (".hidden", "hidden")])
def test_upload_names_cannot_leave_their_folder(name, expected):
    assert safe_name(name) == expected


def test_html_report_is_self_contained_and_readable(model_files, image_dir, labels_file, cache):
    import re

    from quant_core import CompareOptions, CompareRequest, Recipe, run_compare
    from ui.html_report import render_report

    result = run_compare(CompareRequest(str(model_files["keras"]), (str(image_dir),), str(labels_file),
                                        CompareOptions(recipes=(Recipe(Mode.INT8), Recipe(Mode.FLOAT16)))),
                         cache=cache)
    text = render_report(result)
    assert text.startswith("<!DOCTYPE html>") and "Quantization report: tiny" in text
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=\"?https?:", text)  # nothing fetched: opens offline
    assert "Plotly.newPlot" in text and len(re.findall(r"class=\"plotly-graph-div\"", text)) >= 5
    for name in ("float32", "int8", "float16"):
        assert f"<td>{name}</td>" in text
    assert f"<td>{result.variant('int8').size_bytes / 1024:,.1f}</td>" in text  # KB with one decimal, as in the app
    assert "Confusion matrix" in text or "confusion" in text.lower()
    assert "x86" in text or "ARM" in text  # the portability notes travel with the numbers


def test_total_upload_size_is_capped(tmp_path, monkeypatch):
    from ui import inputs

    monkeypatch.setattr(inputs, "MAX_TOTAL_UPLOAD_MB", 1)
    with pytest.raises(InputError, match="add up to 2 MB; the limit for one upload is 1 MB"):
        inputs.save_uploads(tmp_path, ("m.keras", bytes(1024 * 1024)), [("a.png", bytes(1024 * 1024))], None)
    assert not list(tmp_path.iterdir())
    saved = inputs.save_uploads(tmp_path, ("../m.keras", b"k"), [("x/a.png", b"p")], ("labels.txt", b"a"))
    assert saved.model == tmp_path / "model" / "m.keras" and saved.folder == tmp_path
    assert all(tmp_path in p.parents for p in (*saved.images, saved.labels))


def upload(folder, *, image: bytes = b"\x89PNG-1", image_name: str = "a.png"):
    """Saves a small upload (model, two images, labels) into `folder`."""
    from ui.inputs import save_uploads

    return save_uploads(folder, ("m.keras", b"model"), [(image_name, image), ("b.png", b"\x89PNG-2")],
                        ("labels.txt", b"cat\ndog"))


def test_input_digest_changes_with_any_byte_or_name(tmp_path):
    first = upload(tmp_path / "1")
    assert upload(tmp_path / "2").digest == first.digest  # same files, other folder
    changed = upload(tmp_path / "3", image=b"\x89PNG-9")
    renamed = upload(tmp_path / "4", image_name="c.png")
    assert len({first.digest, changed.digest, renamed.digest}) == 3


def test_sample_digest_covers_the_image_folder(tmp_path, monkeypatch):
    import shutil

    from ui import inputs

    sample = inputs.samples()[0]
    copy = tmp_path / "samples"
    shutil.copytree(inputs.SAMPLES_DIR, copy)
    image = next(p for p in (copy / sample.images.relative_to(inputs.SAMPLES_DIR)).rglob("*") if p.is_file())
    monkeypatch.setattr(inputs, "SAMPLES_DIR", copy)
    before = inputs.sample_inputs(sample.name)
    assert before.digest == inputs.sample_inputs(sample.name).digest and before.model.is_relative_to(copy)
    image.rename(image.with_name("renamed" + image.suffix))
    assert inputs.sample_inputs(sample.name).digest != before.digest


def test_inputs_key_reads_no_file(tmp_path):
    import shutil

    from ui.engine import inputs_key

    saved = upload(tmp_path / "up")
    shutil.rmtree(tmp_path / "up")
    assert inputs_key(saved) == saved.digest and len(saved.digest) == 64
