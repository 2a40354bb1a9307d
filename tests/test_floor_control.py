"""The fidelity floor's button reads the floor in force in the same run that changed it (owner and published view)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from conftest import REPO
from quant_core.results.verdict import FloorKind
from quant_core.store.publications import PublicationStore
from synthetic_results import comparison

os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-apptest-cache-"))
from streamlit.testing.v1 import AppTest

APP = str(REPO / "streamlit_app.py")
# int8 gives the original's answer on 20 of 22 images: picked once the floor is lowered to 90 %.
RESULT = comparison({"float32": 8.8, "float16": 8.79, "int8": 4.0}, labelled=True)


def owner() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["qw.result"] = RESULT
    at.switch_page("pages/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def reader() -> AppTest:
    """A stranger's session on the comparison's published link."""
    receipt = PublicationStore(Path(os.environ["QW_STORE_DIR"])).publish(RESULT, {})
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["view"] = receipt.id
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def floor_button(at: AppTest) -> str:
    (popover,) = at.get("popover")
    return popover.proto.popover.label


def settled(at: AppTest) -> str:
    """The button's label, checked to be what the next run (a page change's) shows too."""
    label = floor_button(at)
    at.run()
    assert floor_button(at) == label, "the floor button showed the floor before the change"
    return label


@pytest.mark.parametrize("session", [owner, reader], ids=["owner", "published"])
def test_the_floor_button_follows_each_change_at_once(session):
    at = session()
    assert "99%" in floor_button(at)
    at.number_input(key="w.floor_agreement").set_value(90.0).run()
    assert "90%" in settled(at)
    assert "#### :green[int8]" in [m.value for m in at.markdown]  # the cards follow in the same run, as before
    at.radio(key="w.floor_kind").set_value(FloorKind.ACCURACY_DROP).run()
    assert settled(at) == "Required: at most 1 more wrong answer per 100 images than the original"
    at.number_input(key="w.floor_drop").set_value(5.0).run()
    assert settled(at) == "Required: at most 5 more wrong answers per 100 images than the original"
    at.switch_page("pages/ops.py").run()
    at.switch_page("pages/compare.py").run()  # the floor is the session's: the widgets come back with it
    assert floor_button(at) == "Required: at most 5 more wrong answers per 100 images than the original"
    assert at.number_input(key="w.floor_drop").value == 5.0
