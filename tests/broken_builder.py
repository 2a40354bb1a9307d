"""A deliberately buggy int8 builder, loaded into workers through QW_JOB_MODULES.

It stands for a bug in our own builder code (not a backend refusing a model): the bug must
reach the server's log with its traceback and be shown as an internal error, never as a
variant that "failed".
"""

from __future__ import annotations

from quant_core import builders
from quant_core.modes import Backend, Mode


def broken_int8_builder(source, recipe, data, digest, calibrated):
    """Reads a setting that does not exist, as a typo in a builder would."""
    settings = {"per_channel": recipe.per_channel}
    return settings["per_chanel"]


builders._REGISTRY[(Mode.INT8, Backend.TF_CONVERTER)] = broken_int8_builder
