"""Nested calibration sets: a larger calibration count feeds only the extra samples.

`spread_order` lists image indices so that every prefix is spread over the whole set, so
the samples for a count are the leading samples for any larger count. `NestedStates`
keeps what a backend computed from the rows fed so far and, asked for rows that begin
with them, feeds only the rest. This is exact when the backend folds samples one at a
time into its statistics (the converter's running min/max, the LiteRT Quantizer's moving
average resumed from a previous result): the state after rows A then B is the state
after A + B.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

State = TypeVar("State")


def spread_order(available: int) -> list[int]:
    """Indices 0..available-1 in an order whose every prefix is spread over the whole range.

    Both ends come first, then each next index is the midpoint of the widest gap left (the
    leftmost of equal gaps). Taking the first n gives n images from across the set, and the
    set for n is contained in the set for any larger n. Deterministic.
    """
    if available < 2:
        return list(range(available))
    order = [0, available - 1]
    gaps = [(1 - available, 0, available - 1)] if available > 2 else []  # (-width, low, high): widest first
    while gaps:
        _, low, high = heapq.heappop(gaps)
        middle = (low + high + 1) // 2
        order.append(middle)
        for a, b in ((low, middle), (middle, high)):
            if b - a > 1:  # an index lies strictly between
                heapq.heappush(gaps, (a - b, a, b))
    return order


def rows_digest(data: np.ndarray) -> str:
    """sha256 of an array's dtype, row shape and bytes (the same rows in the same order match)."""
    digest = hashlib.sha256(f"{data.dtype.str}{data.shape[1:]}".encode())
    digest.update(np.ascontiguousarray(data).data)
    return digest.hexdigest()


@dataclass(frozen=True)
class Fed:
    """The rows a state was computed from: how many, and their `rows_digest`."""

    rows: int
    digest: str

    @classmethod
    def of(cls, data: np.ndarray) -> Fed:
        """The record of feeding all of `data`."""
        return cls(len(data), rows_digest(data))

    def begins(self, data: np.ndarray) -> bool:
        """Whether `data` has more rows than these and its leading rows are these."""
        return self.rows < len(data) and rows_digest(data[: self.rows]) == self.digest


class NestedStates(Generic[State]):
    """Backend calibration states by the rows fed into them, grown with only the extra rows.

    With `in_place`, `extend` changes the state it is given (the converter's calibrator):
    that state then stands for the longer rows only, so the entry of the shorter rows is
    dropped, and asking for those again starts afresh. Otherwise `extend` returns a new
    state and both entries are kept.
    """

    def __init__(self, *, in_place: bool) -> None:
        self._in_place = in_place
        self._states: dict[tuple[Hashable, str], tuple[State, Fed]] = {}

    def get(self, data: np.ndarray, digest: str, *, start: Callable[[np.ndarray], State],
            extend: Callable[[State, np.ndarray], State], group: Hashable = None) -> State:
        """The state for `data`: memoized, grown from a state of its leading rows, or started.

        Args:
            data: the calibration rows, in feeding order.
            digest: the caller's key for `data` (an exact hit needs no hashing).
            start: computes a state from rows.
            extend: feeds more rows into a state.
            group: states of different groups (backend settings) never extend each other.
        """
        key = (group, digest)
        if key in self._states:
            return self._states[key][0]
        base = self._longest_prefix(group, data)
        if base is None:
            state = start(data)
        else:
            state, fed = self._states.pop(base) if self._in_place else self._states[base]
            state = extend(state, data[fed.rows :])
        self._states[key] = (state, Fed.of(data))
        return state

    def _longest_prefix(self, group: Hashable, data: np.ndarray) -> tuple[Hashable, str] | None:
        """The key of the state fed the most leading rows of `data`, if any."""
        found = sorted(((fed.rows, key) for key, (_, fed) in self._states.items() if key[0] == group),
                       key=lambda item: -item[0])
        return next((key for _, key in found if self._states[key][1].begins(data)), None)
