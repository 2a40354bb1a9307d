"""Figures remembered per result: a page draws the same charts of the same result at every rerun.

Building a Plotly figure is the costly part of drawing it (each property is validated as it is
set): Compare's four charts and its error charts took about a third of its script time on a page
change. A `CompareResult` is frozen, so a figure built from one is the same for as long as that
object lives. The memo is keyed by the result's identity (checked through a weak reference, so a
new object at a recycled address is never served an old figure) and the other arguments, and keeps
the most recently used few. Callers only read the figures (Streamlit and the HTML report copy them
to JSON); nothing may change one.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from quant_core import CompareResult

T = TypeVar("T")

KEEP = 96  # figures: a few results' worth for every page, across the server's sessions
_lock = threading.Lock()
_kept: OrderedDict[tuple[Hashable, ...], tuple[weakref.ref, Any]] = OrderedDict()


def remembered(build: Callable[..., T]) -> Callable[..., T]:
    """`build(result, *args)`, built once per result object and hashable arguments."""
    name = f"{build.__module__}.{build.__qualname__}"

    @functools.wraps(build)
    def wrapper(result: CompareResult, *args: Hashable) -> T:
        key = (name, id(result), *args)
        with _lock:
            hit = _kept.get(key)
            if hit is not None and hit[0]() is result:
                _kept.move_to_end(key)
                return hit[1]
        value = build(result, *args)
        with _lock:
            _kept[key] = (weakref.ref(result), value)
            _kept.move_to_end(key)
            while len(_kept) > KEEP:
                _kept.popitem(last=False)
        return value

    return wrapper


def forget() -> None:
    """Drops every remembered figure (tests)."""
    with _lock:
        _kept.clear()
