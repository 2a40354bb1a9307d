"""Many users at once: N browser sessions run the full comparison on the same server.

Scenarios, each on a fresh server with an empty cache and a pool of QW_WORKERS=2:
  1. one session alone (the baseline for the ratios);
  2. N sessions at once with distinct settings (calibration counts), so no session is
     answered from another's cached result: the pool really queues N full jobs;
  3. N sessions at once with identical requests (a demo server where everyone tries the sample).
Each session is a real Playwright browser context on loopback. Throughout, /_stcore/health is
probed every 250 ms (target: every answer <= 1 s), and the number of live worker processes and
the server's resident memory are sampled.

Usage: .venv/bin/python bench/bench_load.py [--sessions 4] [--sample digits_mobilenet]
Writes its section of bench/RESULTS.md (between the load-bench markers).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, UTC
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from live_server import HealthProbe, SessionRun, run_sessions, streamlit_server, warm_up  # noqa: E402  pylint: disable=wrong-import-position
from results_md import write_section  # noqa: E402  pylint: disable=wrong-import-position

TIMING_COLUMNS = {"median ms", "p90 ms"}


@dataclass
class ProcessWatch:
    """Samples the server's RSS and how many worker processes it has running."""

    server_pid: int
    max_workers: int = 0
    max_server_mb: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> ProcessWatch:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            workers = 0
            for proc in Path("/proc").iterdir():
                try:
                    if proc.name.isdigit() and b"quant_core.serving.worker" in (proc / "cmdline").read_bytes():
                        workers += 1
                except OSError:
                    continue
            self.max_workers = max(self.max_workers, workers)
            try:
                rss = next(line for line in Path(f"/proc/{self.server_pid}/status").read_text().splitlines()
                           if line.startswith("VmRSS:"))
                self.max_server_mb = max(self.max_server_mb, int(rss.split()[1]) / 1024)
            except (OSError, StopIteration):
                pass


@dataclass(frozen=True)
class Scenario:
    """One measured scenario."""

    name: str
    runs: list[SessionRun]
    wall_s: float
    health: dict[str, float]
    max_workers: int
    max_server_mb: float
    correct: bool


def check(runs: list[SessionRun], modes: int) -> bool:
    """Every variant ok in every session, and identical requests gave identical numbers."""
    by_query: dict[str, list[dict]] = {}
    for run in runs:
        if run.errors or len(run.rows) != modes or any(r.get("status") != "ok" for r in run.rows.values()):
            return False
        numbers = {v: {k: x for k, x in r.items() if k not in TIMING_COLUMNS} for v, r in run.rows.items()}
        by_query.setdefault(run.query, []).append(numbers)
    return all(all(n == group[0] for n in group) for group in by_query.values())


def measure(name: str, queries: list[str], workers: int) -> Scenario:
    """Runs the sessions on a fresh server and collects the figures."""
    env = {"QUANT_CACHE_DIR": tempfile.mkdtemp(prefix="qw-loadbench-cache-"), "QW_WORKERS": str(workers),
           "QW_SESSION_ROOT": tempfile.mkdtemp(prefix="qw-loadbench-sessions-")}
    with streamlit_server(env) as server:
        warm_up(server.url)
        with HealthProbe(server.url) as health, ProcessWatch(server.process.pid) as watch:
            start = time.perf_counter()
            runs = run_sessions(server.url, queries, timeout_s=1800)
            wall = time.perf_counter() - start
    scenario = Scenario(name, runs, wall, health.summary(), watch.max_workers, watch.max_server_mb, check(runs, 7))
    print(f"{name}: wall {wall:.1f} s, sessions {[round(r.seconds, 1) for r in runs]}, health {scenario.health}, "
          f"workers <= {watch.max_workers}, server <= {watch.max_server_mb:.0f} MB, correct {scenario.correct}",
          flush=True)
    return scenario


def main() -> None:
    """Runs the three scenarios and writes the results section."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--sample", default="digits_mobilenet")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    n, base = args.sessions, f"?sample={args.sample}"
    alone = measure("1 session alone", [base], args.workers)
    distinct = measure(f"{n} sessions, distinct settings", [f"{base}&cal={100 - 10 * k}" for k in range(n)],
                       args.workers)
    same = measure(f"{n} sessions, identical requests", [base] * n, args.workers)

    rows = []
    for s in (alone, distinct, same):
        slowest = max(r.seconds for r in s.runs)
        ok = s.health["max"] <= 1.0
        rows.append(f"| {s.name} | {s.wall_s:.1f} s | {slowest / alone.runs[0].seconds:.2f}x | "
                    f"{min(r.seconds for r in s.runs):.1f} / {slowest:.1f} s | "
                    f"{s.health['median'] * 1000:.0f} / {s.health['p99'] * 1000:.0f} / {s.health['max'] * 1000:.0f} ms "
                    f"({s.health['count']}) | {'PASS' if ok else 'MISS'} | {s.max_workers} | {s.max_server_mb:.0f} MB | "  # noqa: E501 - text of a generated document
                    f"{'yes' if s.correct else 'NO'} |")
    body = (
        f"## Many sessions at once (load test)\n\n"
        f"Command: `.venv/bin/python bench/bench_load.py --sessions {n} --sample {args.sample} --workers "
        f"{args.workers}` ({datetime.now(UTC):%Y-%m-%d %H:%M UTC}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; the browsers run on the same machine). Every session is a Playwright browser "
        f"context pressing \"Run the full comparison\" (7 variants, latency measured) on a fresh server with an empty "
        f"cache, after one warm-up page view; /_stcore/health probed every 250 ms. \"x alone\" is the slowest session's time over the single "  # noqa: E501 - text of a generated document
        f"session's. With distinct settings the calibrated variants are built per session; variants that do not "
        f"depend on calibration are shared through the content-addressed cache once built. The small version runs "
        f"in CI (tests/test_load.py: 4 sessions on both samples, numbers checked against the engine).\n\n"
        f"| scenario | wall | x alone | fastest / slowest session | health median / p99 / max (probes) | "
        f"health <= 1 s | max workers | server RSS | correct |\n|---|---:|---:|---:|---:|:---:|---:|---:|:---:|\n"
        + "\n".join(rows))
    print(write_section("load-bench", body))


if __name__ == "__main__":
    main()
