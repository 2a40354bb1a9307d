"""A real `streamlit run` on a loopback port, a health prober, and browser helpers.

Shared by the browser tests, the load test and bench/bench_browser.py / bench/bench_load.py.
Everything binds to 127.0.0.1 and stops by itself (context managers, time limits).
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
ERROR = '[data-testid="stAlertContentError"] [data-testid="stMarkdownContainer"]'  # the message, not its icon
EXCEPTION = '[data-testid="stException"]'
# Compare with a finished comparison drawn (rows stream before; charts come with the result). After a what-if,
# wait for `done_other_than(key)`: the last result's elements stay on screen, stale, while the next one runs.
DONE = f'{IDLE} [data-qw-result]'
RESULT_KEY_JS = "() => document.querySelector('[data-qw-result]')?.dataset.qwResult ?? null"


def done_other_than(key: str) -> str:
    """Selector: a result other than `key` is drawn and the page is idle (wait for this, then IDLE)."""
    return f'[data-qw-result]:not([data-qw-result="{key}"])'

# The Compare page's summary table as {variant: {column: text}} (runs in the page; works for sync and async APIs).
SUMMARY_JS = """() => {
  const table = document.querySelector('[data-testid="stTable"] table');
  if (!table) return null;
  const header = Array.from(table.querySelectorAll('thead th')).map(c => c.innerText.trim());
  const rows = {};
  for (const tr of table.querySelectorAll('tbody tr')) {
    const cells = Array.from(tr.querySelectorAll('td, th')).map(c => c.innerText.trim());
    const named = {};
    header.slice(header.length - cells.length).forEach((h, i) => named[h] = cells[i]);
    rows[cells[0]] = named;
  }
  return rows;
}"""


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health_seconds(url: str, timeout: float = 5.0) -> float:
    """Seconds for /_stcore/health to answer ok (inf when it fails or times out)."""
    start = time.perf_counter()
    try:
        ok = urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout).read() == b"ok"
    except OSError:
        return float("inf")
    return time.perf_counter() - start if ok else float("inf")


INCIDENT = "ERROR quant_core.incidents: internal error"  # how the server logs a bug (ui/logs.py)


@dataclass
class Server:
    """A running app: its URL, the seconds it took to answer health checks, its process and its log."""

    url: str
    started_s: float
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")


@contextmanager
def streamlit_server(env: Mapping[str, str] | None = None, *, start_timeout_s: float = 120,
                     allow_internal_errors: bool = False, cwd: Path = REPO) -> Iterator[Server]:
    """`streamlit run streamlit_app.py` in `cwd` (the repository) on a free loopback port; terminated on exit.

    Raises AssertionError on exit when the server logged an internal error (a bug) and
    `allow_internal_errors` is off: a page that showed "internal error, logged as <id>"
    fails the test or benchmark that drove it.
    """
    port = free_port()
    start = time.perf_counter()
    log_dir = Path(tempfile.mkdtemp(prefix="qw-server-log-"))
    log_path = log_dir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=cwd, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    server = Server(url, 0.0, proc, log_path)
    try:
        while health_seconds(url, timeout=1) == float("inf"):
            if proc.poll() is not None or time.perf_counter() - start > start_timeout_s:
                raise RuntimeError(f"streamlit did not become healthy within {start_timeout_s:.0f} s")
            time.sleep(0.05)
        server.started_s = time.perf_counter() - start
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        text = server.log()
        shutil.rmtree(log_dir, ignore_errors=True)
    if INCIDENT in text and not allow_internal_errors:
        raise AssertionError("the server logged an internal error:\n" + text[text.index(INCIDENT):][:4000])


_PROBE = """
import signal, sys, time, urllib.request
url, every = sys.argv[1], float(sys.argv[2])
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    start = time.time()
    try:
        ok = urllib.request.urlopen(url + "/_stcore/health", timeout=5).read() == b"ok"
    except OSError:
        ok = False
    took = time.time() - start
    print(start, took if ok else "inf", flush=True)
    time.sleep(max(0.0, every - took))
"""


class HealthProbe:
    """Polls /_stcore/health every `every_s` from its own process and keeps every answer time.

    A separate process, so the prober's timings never include waits for the harness's own GIL
    (the Playwright driver in the test process is busy while sessions run).
    """

    def __init__(self, url: str, *, every_s: float = 0.25) -> None:
        self.url, self.every_s = url, every_s
        self.seconds: list[float] = []
        self.times: list[float] = []  # time.time() of each probe's start
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> HealthProbe:
        self._proc = subprocess.Popen([sys.executable, "-c", _PROBE, self.url, str(self.every_s)],
                                      stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc) -> None:
        self._proc.terminate()
        out, _ = self._proc.communicate(timeout=20)
        for line in out.splitlines():
            start, took = line.split()
            self.times.append(float(start))
            self.seconds.append(float(took))

    def summary(self) -> dict[str, float]:
        """Count, median, p99 and max answer time in seconds (inf counts failures)."""
        s = sorted(self.seconds) or [float("inf")]
        return {"count": len(self.seconds), "median": statistics.median(s),
                "p99": s[min(len(s) - 1, int(0.99 * len(s)))], "max": s[-1]}


def deprioritize_clients(niceness: int = 10) -> None:
    """Lowers the CPU priority of the browsers and their driver started by this process.

    On a real deployment the browsers run on the users' machines; here they share the
    server's two cores, and four tabs drawing charts would otherwise compete with the
    server on equal terms. Processes the browser forks later (new tabs) inherit the niceness.
    """
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if (b"chrom" in cmdline or b"playwright" in cmdline) and _descends_from(int(proc.name), me):
                os.setpriority(os.PRIO_PROCESS, int(proc.name), niceness)
        except OSError:
            continue


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether `ancestor` is among the parents of `pid`."""
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid == ancestor:
            return True
    return False


@dataclass(frozen=True)
class SessionRun:
    """One browser session's full comparison: its summary table and how long it took."""

    query: str
    rows: dict[str, dict[str, str]]
    seconds: float  # from the click on "Run the full comparison" to the rendered table
    errors: tuple[str, ...]


async def full_comparison(browser, url: str, query: str, *, timeout_s: float = 900) -> SessionRun:
    """A new browser context (a new Streamlit session) runs the one-click comparison on a bundled sample."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = await context.new_page()
        page.set_default_timeout(timeout_s * 1000)
        await page.goto(f"{url}/{query}")
        await page.wait_for_selector("text=What we understood:")
        await page.wait_for_selector(IDLE)
        start = time.perf_counter()
        await page.get_by_role("button", name="Run the full comparison").click()
        await page.wait_for_selector('h1:has-text("Compare")')
        await page.wait_for_selector(DONE)
        seconds = time.perf_counter() - start
        rows = await page.evaluate(SUMMARY_JS)
        errors = tuple(await page.locator(f"{ERROR}, {EXCEPTION}").all_inner_texts())
        return SessionRun(query, rows or {}, seconds, errors)
    finally:
        await context.close()


def warm_up(url: str) -> None:
    """One page view before a measurement, as any server gets after start-up (first imports happen here)."""
    from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page()
        page.set_default_timeout(300_000)
        page.goto(url)
        page.wait_for_selector("text=What we understood:")
        page.wait_for_selector(IDLE)
        browser.close()


def run_sessions(url: str, queries: list[str], *, timeout_s: float = 900) -> list[SessionRun]:
    """Runs one full comparison per query, all at once, each in its own browser session."""
    import asyncio  # pylint: disable=import-outside-toplevel

    from playwright.async_api import async_playwright  # pylint: disable=import-outside-toplevel

    async def main() -> list[SessionRun]:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            deprioritize_clients()
            try:
                return await asyncio.gather(*(full_comparison(browser, url, q, timeout_s=timeout_s) for q in queries))
            finally:
                await browser.close()

    return asyncio.run(asyncio.wait_for(main(), timeout=timeout_s + 60))
