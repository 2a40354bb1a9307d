"""A published link speaks plainly: the decision in everyday words first, the workbench's terms on hover.

The reader of a link has Compare, Ops and Report only, never the workbench's other pages.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from conftest import REPO
from quant_core.modes import Mode
from quant_core.recipe import Recipe
from quant_core.store.publications import PublicationStore
from synthetic_results import comparison

os.environ.setdefault("QUANT_CACHE_DIR", tempfile.mkdtemp(prefix="qw-apptest-cache-"))
from streamlit.testing.v1 import AppTest

APP = str(REPO / "streamlit_app.py")
# float16 keeps every answer at half the size; int8 (integer-only) changes 2 of 22; weight_only is a what-if.
RESULT = comparison({"float32": 8.8, "weight_only": 8.9, "float16": 8.79, "int8": 4.0}, labelled=True,
                    recipes={"weight_only": Recipe(Mode.WEIGHT_ONLY, per_channel=False)})
TERMS = ("top-1", "Fidelity floor", "fidelity floor", "None fits", "agreement with float32", "≥")
OTHER_PAGES = ("Quantize", "Model & data", "Layers", "Full dataset")


@pytest.fixture(scope="module")
def link() -> str:
    return PublicationStore(Path(os.environ["QW_STORE_DIR"])).publish(RESULT, {}).id


def reader(link: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["view"] = link
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown(at: AppTest) -> list[str]:
    """Every text on the page that is read without hovering."""
    texts = [e.value for kind in ("markdown", "caption", "warning", "info", "error", "success", "subheader")
             for e in at.get(kind)]
    return texts + [p.proto.popover.label for p in at.get("popover")] + [e.label for e in at.expander]


def test_the_verdict_leads_with_plain_words(link):
    at = reader(link)  # the first paint: the verdict and the table
    text = "\n".join(shown(at))
    assert "Same answer as the original on 22 of 22 images, right as often as the original (20 of 22), 2.0x " \
           "smaller" in text  # float16, for the CPU and the GPU
    assert "Required: the original's answer on at least 99% of the images" in text
    for term in TERMS:
        assert term not in text, term


def test_none_fits_says_what_it_means_for_the_decision(link):
    at = reader(link)
    assert "#### :orange[Nothing to ship yet]" in [m.value for m in at.markdown]
    (plain,) = [m for m in at.markdown if m.value.startswith("Nothing to ship for this hardware yet")]
    assert "The closest, int8, gives the original's answer on 20 of 22 images." in plain.value
    assert "Shipping it anyway means accepting 2 different answers in 22 images" in plain.value
    assert "this model needs a CPU or GPU (the other cards)" in plain.value


def test_the_terms_stay_on_hover(link):
    at = reader(link)
    helps = {m.value: m.proto.help for m in at.markdown}
    none_fits = next(h for v, h in helps.items() if v.startswith("Nothing to ship for this hardware yet"))
    assert none_fits.startswith("No variant meets agreement with float32 ≥ 99%: the closest, int8, has 90.9%")
    cpu = next(h for v, h in helps.items() if v.startswith("Same answer as the original on 22 of 22"))
    assert "same top-1 class as float32 on 22 of 22 images" in cpu
    (popover,) = at.get("popover")
    assert "The fidelity floor: agreement with float32 ≥ 99%" in popover.proto.popover.help


def test_no_page_the_reader_does_not_have_is_pointed_to(link):
    at = reader(link)
    at.run()  # everything below the verdict too
    banner = next(w.value for w in at.warning if "per-tensor weights" in w.value)
    assert "what the change costs" in banner
    for page in ("pages/compare.py", "pages/ops.py", "pages/report.py"):
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        for text in shown(at):
            assert not any(name in text for name in OTHER_PAGES), (page, text)
    assert any("required, as set on Compare: the original's answer on at least 99%" in c.value for c in at.caption)
    assert not any("fidelity floor" in c.value for c in at.caption)  # Report's caption: the term is on hover


def test_the_owner_reads_the_plain_sentence_with_the_terms_beside_it():
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["qw.result"] = RESULT
    at.switch_page("pages/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    markdown, captions = [m.value for m in at.markdown], [c.value for c in at.caption]
    assert any(m.startswith("Nothing to ship for this hardware yet") for m in markdown)
    assert any(c.startswith("No variant meets agreement with float32 ≥ 99%") for c in captions)
    assert any("the defaults are on **Quantize**" in w.value for w in at.warning)  # the owner has that page


@pytest.mark.parametrize("change, words", [
    ({"top1_agreement": 20 / 22}, "does not give the original's answer on at least 99% of the images"),
    ({"warning": "changes the top-1 prediction on 40% of images"}, "carries a warning"),
])
def test_when_the_gpu_keeps_the_original_the_card_says_why_float16_is_not_it(change, words):
    from dataclasses import replace

    from quant_core.results.verdict import Target, decide

    result = replace(RESULT, variants=tuple(replace(v, **change) if v.name == "float16" else v
                                            for v in RESULT.variants))
    pick = decide(result).pick(Target.GPU)
    assert pick.variant == "float32"
    assert pick.plain == ("Ship the original model as it is: a GPU computes in float, and the half-size float "
                          f"version (float16) {words}.")
