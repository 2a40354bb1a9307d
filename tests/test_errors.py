"""The one helper that turns an engine's (often multi-line) exception into one line."""

from __future__ import annotations

from quant_core.errors import QuantError, first_line


def test_first_line_skips_blank_lines_strips_and_truncates():
    err = RuntimeError("\n\n  error: 'tfl.conv_2d' op failed  \nloc(...): a long MLIR dump\n")
    assert first_line(err) == "error: 'tfl.conv_2d' op failed"
    assert first_line(err, limit=5) == "error"
    assert first_line(KeyError()) == "" and (first_line(ValueError("  ")) or "ValueError") == "ValueError"


def test_user_errors_are_one_line_whatever_they_are_given():
    assert str(QuantError("a\n  b\tc")) == "a b c"
