"""Many users at once: N=4 browser sessions each run the full comparison on a bundled sample.

Small version of bench/bench_load.py (which runs every session on distinct settings and
records the figures): loopback only, a bounded pool of 2 workers, stops by itself.
"""

from __future__ import annotations

import tempfile

import pytest

from live_server import CHROMIUM, HealthProbe, run_sessions, streamlit_server, warm_up
from quant_core import CompareOptions, CompareRequest, run_compare
from quant_core.cache import ArtifactCache
from ui.inputs import sample_inputs
from ui.settings import Settings

pytestmark = pytest.mark.browser

SESSIONS = ["?sample=digits_cnn", "?sample=digits_mobilenet", "?sample=digits_cnn", "?sample=digits_mobilenet"]


def expected_rows(sample: str) -> dict[str, dict[str, str]]:
    """The numbers the Compare table must show, computed in this process with a separate cache."""
    inputs = sample_inputs(sample)
    request = CompareRequest(str(inputs.model), tuple(str(p) for p in inputs.images), str(inputs.labels),
                             CompareOptions(recipes=Settings().recipes(), measure_latency=False))
    result = run_compare(request, cache=ArtifactCache(tempfile.mkdtemp(prefix="qw-load-expected-")))
    return {v.name: {"status": "ok" if v.ok else "failed", "size (KB)": f"{v.size_bytes / 1024:,.1f}",
                     "agreement": f"{v.top1_agreement:.1%}", "accuracy": f"{v.accuracy:.1%}"}
            for v in result.variants}


def test_four_sessions_at_once_all_get_correct_results_and_health_stays_fast():
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (done by .ci/run)")
    expected = {s: expected_rows(s) for s in ("digits_cnn", "digits_mobilenet")}
    env = {"QUANT_CACHE_DIR": tempfile.mkdtemp(prefix="qw-load-cache-"), "QW_WORKERS": "2",
           "QW_SESSION_ROOT": tempfile.mkdtemp(prefix="qw-load-sessions-")}
    with streamlit_server(env) as server:
        warm_up(server.url)
        with HealthProbe(server.url) as health:
            runs = run_sessions(server.url, SESSIONS, timeout_s=780)
        assert server.process.poll() is None  # the server survived
    for run in runs:
        sample = run.query.split("=", 1)[1]
        assert not run.errors, (run.query, run.errors)
        assert list(run.rows) == list(expected[sample]), run.query
        for name, want in expected[sample].items():
            got = {k: run.rows[name][k] for k in want}
            assert got == want, (run.query, name, got, want)
    stats = health.summary()
    assert stats["count"] >= 20 and stats["max"] <= 1.0, stats
