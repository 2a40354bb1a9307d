"""Typed modes and recipes: strict parsing, validation, resolution and JSON round-trips."""

from __future__ import annotations

import json

import pytest

from quant_core import builders
from quant_core.errors import InputError
from quant_core.modes import MODE_INFO, Backend, IOType, Mode, parse_mode, parse_modes
from quant_core.recipe import CalibrationSource, Recipe


def test_mode_names_are_the_cli_and_json_identifiers():
    assert [m.value for m in Mode] == ["float32", "weight_only", "dynamic_range", "float16", "int8",
                                       "int8_float_io", "int16x8"]


@pytest.mark.parametrize("bad", ["int9", "INT8", "uint8", "", "dynamic"])
def test_a_typo_raises_instead_of_building_another_model(bad):
    with pytest.raises(InputError, match="expected one of: float32"):
        parse_mode(bad)


def test_parse_modes_keeps_order_and_drops_repeats():
    assert parse_modes("int8, float16,int8") == (Mode.INT8, Mode.FLOAT16)
    with pytest.raises(InputError, match="no modes given"):
        parse_modes(" , ")


def test_every_mode_has_help_and_a_builder_for_each_backend():
    for mode, info in MODE_INFO.items():
        assert info.title and len(info.help) > 40 and "\n" not in info.help
        assert set(info.tflite_backends) <= set(info.backends)
        for backend in info.backends:
            assert (mode, backend) in builders._REGISTRY
    assert {key[0] for key in builders._REGISTRY} == set(Mode)
    assert MODE_INFO[Mode.INT8].needs_calibration and not MODE_INFO[Mode.DYNAMIC_RANGE].needs_calibration


def test_recipe_coerces_strings_and_round_trips_json():
    recipe = Recipe("int8", backend="litert_quantizer", calibration_count=7, calibration_source="random",
                    per_channel=False, io_type="int8")
    assert recipe.mode is Mode.INT8 and recipe.backend is Backend.LITERT_QUANTIZER
    assert recipe.calibration_source is CalibrationSource.RANDOM
    again = Recipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert again == recipe and hash(again) == hash(recipe)


@pytest.mark.parametrize("kwargs,match", [
    ({"mode": "weight_only", "backend": "tf_converter"}, "cannot be built by tf_converter"),
    ({"mode": "int8_float_io", "backend": "litert_quantizer"}, "cannot be built by litert_quantizer"),
    ({"mode": "int8", "io_type": "float32"}, "supports I/O types int8, uint8"),
    ({"mode": "int8", "backend": "litert_quantizer", "io_type": "uint8"}, "supports I/O types int8, got uint8"),
    ({"mode": "float16", "io_type": "int8"}, "supports I/O types float32"),
    ({"mode": "int8", "calibration_count": 0}, "calibration count must be"),
    ({"mode": "int8", "calibration_count": 2.5}, "calibration count must be"),
    ({"mode": "int8", "backend": "tflite"}, "unknown backend 'tflite'"),
])
def test_invalid_recipes_are_refused_with_a_clear_message(kwargs, match):
    with pytest.raises(InputError, match=match):
        Recipe(**kwargs)


def test_from_dict_refuses_unknown_fields():
    with pytest.raises(InputError, match="unknown recipe fields: bits"):
        Recipe.from_dict({"mode": "int8", "bits": 4})


def test_resolve_fills_backend_and_io_type_per_source():
    assert Recipe(Mode.INT8).resolve(source_is_tflite=False) == Recipe(
        Mode.INT8, backend=Backend.TF_CONVERTER, io_type=IOType.INT8)
    litert_16x8 = Recipe(Mode.INT16X8, backend=Backend.LITERT_QUANTIZER)
    assert litert_16x8.resolve(source_is_tflite=False).io_type is IOType.INT16
    assert Recipe(Mode.DYNAMIC_RANGE).resolve(source_is_tflite=True).backend is Backend.LITERT_QUANTIZER
    assert Recipe(Mode.FLOAT16).resolve(source_is_tflite=False).backend is Backend.LITERT_QUANTIZER
    assert Recipe(Mode.DYNAMIC_RANGE).resolve(source_is_tflite=False).backend is Backend.LITERT_QUANTIZER
    with pytest.raises(InputError, match="needs litert_quantizer"):
        Recipe(Mode.FLOAT16, backend=Backend.TF_CONVERTER).resolve(source_is_tflite=True)


def test_calibration_settings_of_a_mode_that_does_not_calibrate_do_not_make_it_another_variant():
    for mode in (Mode.FLOAT32, Mode.WEIGHT_ONLY, Mode.DYNAMIC_RANGE, Mode.FLOAT16):
        tuned = Recipe(mode, calibration_count=7, calibration_source="random").resolve(source_is_tflite=False)
        assert tuned == Recipe(mode).resolve(source_is_tflite=False), mode
    int8 = Recipe(Mode.INT8, calibration_count=7).resolve(source_is_tflite=False)
    assert int8.calibration_count == 7 and int8 != Recipe(Mode.INT8).resolve(source_is_tflite=False)


def test_settings_a_mode_does_not_use_do_not_make_its_variant_look_new():
    """A what-if on per-channel or calibration must not rebuild (or re-time) float32 and float16."""
    for mode in (Mode.FLOAT32, Mode.FLOAT16):
        changed = Recipe(mode, per_channel=False, calibration_count=7).resolve(source_is_tflite=False)
        assert changed == Recipe(mode).resolve(source_is_tflite=False)
    for mode in (Mode.WEIGHT_ONLY, Mode.DYNAMIC_RANGE, Mode.INT8, Mode.INT16X8):  # integer weights: per channel
        assert (Recipe(mode, per_channel=False).resolve(source_is_tflite=False)
                != Recipe(mode).resolve(source_is_tflite=False))
