"""The Full dataset page on a real multi-node Ray cluster (tests/ray_cluster.py), in a real browser.

The server's evaluations join a head and a node on 127.0.0.1. Each fault is played mid-run for
sure: the node is frozen (SIGSTOP) right after the click, so the shards it holds cannot finish,
and the fault comes once the page shows images done. A node lost: the page ends with every
image scored, the engine's numbers image by image, and a line saying the node was lost. The
head lost: the page ends, in seconds, with one line and the shards done; no spinner is left.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest

from augmented import write_augmented
from conftest import REPO
from live_server import CHROMIUM, ERROR, IDLE, LAUNCH_ARGS, streamlit_server
from quant_core import ArtifactCache, CompareOptions, load_images
from quant_core.compare import Workbench, measure_variants
from quant_core.inputs.datasets import open_dataset
from quant_core.serving.dataset_evaluation import evaluate_dataset
from quant_core.serving.executors import LocalExecutor
from ray_cluster import LoopbackCluster
from ui.settings import Settings

pytestmark = pytest.mark.browser
pytest.importorskip("ray")

IMAGES = 640
SHOTS = REPO / "artifacts" / "screenshots"
INFO = '[data-testid="stAlertContentInfo"] [data-testid="stMarkdownContainer"]'


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("datasets")
    write_augmented(REPO / "sample_models" / "digits_images", root / "digits", IMAGES, seed=5, flip=False)
    return root


def expected_top1(dataset: Path) -> dict[str, tuple[int, ...]]:
    """Every variant's prediction per image, from the engine in this process (variants built as the app builds them)."""
    options = CompareOptions(recipes=Settings().recipes(), measure_latency=False)
    bench = Workbench.open(REPO / "sample_models" / "digits_cnn.keras",
                           load_images([REPO / "sample_models" / "digits_images"]), options=options,
                           cache=ArtifactCache(tempfile.mkdtemp(prefix="qw-cluster-expected-")),
                           class_names=tuple((REPO / "sample_models" / "digits_labels.txt").read_text().split()))
    result = measure_variants(bench, options, on_progress=lambda p: None)
    evaluation = evaluate_dataset(open_dataset([dataset]), bench.model_set(result.variants),
                                  num_classes=bench.source.info.num_classes, class_names=bench.labels.class_names,
                                  executor=LocalExecutor())
    return {s.name: s.top1 for s in evaluation.variants}


def _evaluate_with(page, fault) -> None:
    """Clicks Evaluate, freezes a node, and plays `fault` once the page shows images done."""
    page.locator('button[data-testid^="stBaseButton-"]', has_text=f"Evaluate on {IMAGES} images").click()
    page.wait_for_selector('button:has-text("Stop")')
    fault.freeze()
    page.wait_for_function(r"""() => /^[1-9][\d,]* of 640 images/.test(
        document.querySelector('[data-testid="stProgress"]')?.innerText?.trim() ?? '')""", timeout=300_000)


def test_the_full_dataset_page_holds_a_node_and_the_head_lost_mid_run(datasets, tmp_path):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (done by .ci/run)")
    from playwright.sync_api import sync_playwright

    expected = expected_top1(datasets / "digits")
    cluster = LoopbackCluster().start(nodes=2, cpus=1)
    env = cluster.env | {"QW_EXECUTOR": "ray", "QW_RAY_ADDRESS": cluster.address, "QW_RAY_HEAD_GRACE_S": "3",
                         "QW_DATASETS_DIR": str(datasets), "QUANT_CACHE_DIR": str(tmp_path / "cache")}
    try:
        with streamlit_server(env) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 2400}, accept_downloads=True)
            page.set_default_timeout(300_000)
            page.goto(f"{server.url}/?sample=digits_cnn")
            page.wait_for_selector("text=What we understood:")
            page.get_by_role("button", name="Run the full comparison").click()
            page.wait_for_selector(f"{IDLE} [data-qw-result]")
            page.locator('[data-testid="stSidebarNavLink"]', has_text="Full dataset").click()
            page.wait_for_selector(f"text=Runs on the Ray cluster at {cluster.address}")

            lost = cluster.nodes[1]
            _evaluate_with(page, lost)
            lost.kill()
            page.wait_for_selector("text=On digits")
            page.wait_for_selector(IDLE)
            assert page.locator('button:has-text("Stop")').count() == 0
            notes = page.locator(INFO).all_inner_texts()
            assert any(re.search(r"Ray node 127\.0\.0\.1:\d+ \(id \w+\) was lost during the run; .*Every image was "
                                 r"still scored once\.", n) for n in notes), notes
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "cluster_node_lost.png"), full_page=True)
            with page.expect_download() as download:
                page.get_by_role("button", name="Scores and per-image predictions (JSON)").click()
            download.value.save_as(tmp_path / "evaluation.json")
            found = json.loads((tmp_path / "evaluation.json").read_text())
            assert found["evaluated"] == IMAGES and not found["cancelled"]
            assert {v["name"]: tuple(v["top1"]) for v in found["variants"]} == expected  # image by image

            frozen = cluster.add_node(cpus=1)
            _evaluate_with(page, frozen)
            cluster.head.kill()
            page.wait_for_selector(f"{ERROR}:has-text('stopped answering')", timeout=120_000)
            page.wait_for_selector(IDLE)
            assert page.locator('button:has-text("Stop")').count() == 0
            errors = page.locator(ERROR).all_inner_texts()
            assert len(errors) == 1 and re.fullmatch(
                rf"Stopped: the Ray head at {re.escape(cluster.address)} stopped answering: the evaluation stopped, "
                rf"keeping the shards done\. These numbers cover the [1-9][\d,]* images scored before it stopped, of "
                rf"{IMAGES}\.", errors[0].strip()), errors
            page.screenshot(path=str(SHOTS / "cluster_head_lost.png"), full_page=True)
            assert page.locator('[data-testid="stDataFrame"]').count() >= 1  # the shards done are shown
            browser.close()
    finally:
        cluster.stop()
