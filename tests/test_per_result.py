"""Figures remembered per result object: built once while the result lives, never served for another one."""

from __future__ import annotations

import gc
from dataclasses import replace

import pytest

from synthetic_results import comparison
from ui import charts, per_result


def classifier_result():
    return comparison({"float32": 2.0, "float16": 2.1, "int8": 1.0}, labelled=True)


@pytest.fixture(autouse=True)
def _forget():
    per_result.forget()
    yield
    per_result.forget()


def test_a_figure_is_built_once_per_result_and_arguments():
    calls = []

    @per_result.remembered
    def chart(result, name):
        calls.append((id(result), name))
        return object()

    result = classifier_result()
    first = chart(result, "int8")
    assert chart(result, "int8") is first and len(calls) == 1
    assert chart(result, "float16") is not first and len(calls) == 2
    other = replace(result)  # equal, but another object: built anew
    assert chart(other, "int8") is not first and len(calls) == 3


def test_a_new_result_at_a_recycled_address_is_never_served_an_old_figure():
    built = []

    @per_result.remembered
    def chart(result):
        built.append(result)
        return len(built)

    result = classifier_result()
    assert chart(result) == 1
    address = id(result)
    del result, built[:]
    gc.collect()
    # The memo's entry outlives its result; a lookup at the same address must not return it.
    key = next(k for k in per_result._kept if k[1] == address)  # pylint: disable=protected-access
    assert per_result._kept[key][0]() is None  # pylint: disable=protected-access
    fresh = classifier_result()
    assert chart(fresh) == 1 and built == [fresh]


def test_the_memo_keeps_a_bounded_number_of_figures():
    @per_result.remembered
    def chart(result, k):
        return k

    result = classifier_result()
    for k in range(per_result.KEEP + 10):
        chart(result, k)
    assert len(per_result._kept) == per_result.KEEP  # pylint: disable=protected-access


def test_the_compare_charts_are_remembered_and_equal_to_a_fresh_build():
    result = classifier_result()
    for build in (charts.fidelity_chart, charts.latency_chart, charts.size_chart, charts.memory_chart):
        first = build(result)
        assert build(result) is first
        assert build.__wrapped__(result).to_dict() == first.to_dict()
