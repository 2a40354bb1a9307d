"""The one helper that turns a backend's (often multi-line) exception into one line."""

from __future__ import annotations

from quant_core.errors import QuantError, first_line


def test_first_line_skips_blank_lines_strips_and_truncates():
    err = RuntimeError("\n\n  error: 'tfl.conv_2d' op failed  \nloc(...): a long MLIR dump\n")
    assert first_line(err) == "error: 'tfl.conv_2d' op failed"
    assert first_line(err, limit=5) == "error"
    assert first_line(KeyError()) == "" and (first_line(ValueError("  ")) or "ValueError") == "ValueError"


def test_user_errors_are_one_line_whatever_they_are_given():
    assert str(QuantError("a\n  b\tc")) == "a b c"


def test_every_typed_option_is_parsed_by_one_coercion_with_one_message():
    import pytest

    from quant_core import IOType, Mode, PreprocessingOverride, Recipe
    from quant_core.errors import InputError, parse_choice
    from quant_core.inputs.preprocess import Normalization, Preset
    from ui.settings import Settings

    assert parse_choice(Mode, " int8 ", "mode") is Mode.INT8
    assert parse_choice(Mode, Mode.FLOAT16, "mode") is Mode.FLOAT16
    cases = [
        (lambda: Recipe("int9"), "unknown mode 'int9'; expected one of: float32, weight_only,"),
        (lambda: Recipe(Mode.INT8, io_type="int4"), "unknown io_type 'int4'; expected one of: float32, int8, uint8,"),
        (lambda: Normalization.of("0,2"), "unknown normalization '0,2'; expected one of: 0,1, -1,1, 0,255,"),
        (lambda: PreprocessingOverride(resize="lanczos"), "unknown resize 'lanczos'; expected one of: bilinear,"),
        (lambda: Settings.from_query({"io": "int4"}), "unknown io type 'int4'; expected one of: "),
    ]
    for make, message in cases:
        with pytest.raises(InputError) as err:
            make()
        assert str(err.value).startswith(message), str(err.value)
    assert {k.value for k in IOType} >= {"int8", "uint8"} and Preset.RAW.value == "0,255"
