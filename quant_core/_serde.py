"""JSON: lossless round-trip for the frozen result dataclasses (the result cache), and parsing a user's JSON."""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import types
import typing
from typing import Any

import numpy as np

from quant_core.errors import InputError, first_line

MAX_USER_JSON = 16 * 1024 * 1024  # characters: a labels file of 21,000 ImageNet-21k names is under 1 MB


def parse_json(text: str, *, what: str) -> Any:
    """Parses JSON a user gave (a labels file, a recipe), refusing in one line what cannot be read.

    Python's parser raises RecursionError, not a decoding error, on deep nesting (a
    thousand levels of `[`), and ValueError on integers of more than 4,300 digits.

    Raises:
        InputError: "<what>: ..." for invalid, too deeply nested or oversized JSON.
    """
    if len(text) > MAX_USER_JSON:
        raise InputError(f"{what}: {len(text):,} characters of JSON; expected at most {MAX_USER_JSON:,}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{what}: invalid JSON ({err.msg} at line {err.lineno})") from None
    except RecursionError:
        raise InputError(f"{what}: JSON nested too deeply to read; expected a flat list or object") from None
    except ValueError as err:  # e.g. an integer too long to convert
        raise InputError(f"{what}: unreadable JSON ({first_line(err, limit=120)})") from None


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words ("an object", "a list of 3", "a number")."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return f"an object of {len(value)} key{'' if len(value) == 1 else 's'}"
    return type(value).__name__


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, enums, tuples and numpy scalars to plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    return obj


def from_jsonable(cls: Any, data: Any) -> Any:
    """Inverse of `to_jsonable`, guided by the type hints of `cls`."""
    if data is None:
        return None
    origin = typing.get_origin(cls)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(cls) if a is not type(None)]
        return from_jsonable(options[0], data) if len(options) == 1 else data
    if dataclasses.is_dataclass(cls):
        # Missing fields take their defaults (a dataclass without a default still raises).
        return typing.cast(Any, cls)(**{name: from_jsonable(hint, data[name])
                                        for name, hint in _init_hints(typing.cast(type, cls)) if name in data})
    if origin is tuple:
        args = typing.get_args(cls)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_jsonable(args[0], v) for v in data)
        return tuple(from_jsonable(a, v) for a, v in zip(args, data))
    if origin is dict:
        return dict(data)
    if isinstance(cls, type) and issubclass(cls, enum.Enum):
        return cls(data)
    return data


@functools.cache
def _init_hints(cls: type) -> tuple[tuple[str, Any], ...]:
    """A dataclass's init fields with their resolved type hints (resolving them is most of a parse's cost)."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.init)
