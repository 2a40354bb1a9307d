"""A real `streamlit run` on a loopback port, a health prober, and browser helpers.

Shared by the browser tests, the load test and bench/bench_browser.py / bench/bench_load.py.
Everything binds to 127.0.0.1 and stops by itself (context managers, time limits).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("live_server")
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
        assert self._proc is not None  # started by __enter__
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
    server on equal terms. Chromium sets its tabs' own niceness, and it leads its own session:
    under the kernel's autogroup scheduling the session's niceness is what weighs it against
    the server, so that is lowered too (when the browser's session is not this process's).
    """
    me = os.getpid()
    own_group = _autogroup(Path("/proc/self"))
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if (b"chrom" in cmdline or b"playwright" in cmdline) and _descends_from(int(proc.name), me):
                os.setpriority(os.PRIO_PROCESS, int(proc.name), niceness)
                if _autogroup(proc) not in (None, own_group):
                    (proc / "autogroup").write_text(f"{niceness}\n")
        except OSError:
            continue


def _autogroup(proc: Path) -> str | None:
    """The process's scheduling autogroup (None without autogroups)."""
    try:
        return (proc / "autogroup").read_text().split()[0]
    except (OSError, IndexError):
        return None


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


def _is_upload(response) -> bool:
    """A file the browser sent to the server's upload endpoint (its answer means the server stored it)."""
    return "/_stcore/upload_file/" in response.url and response.request.method == "PUT"


def stage_files(page, model: Path, images: list[Path], labels: Path | None = None) -> None:
    """Puts files in the Upload form's real file inputs and waits until the server stored every one (sync page)."""
    page.get_by_text("Upload my own").click()
    page.wait_for_selector(IDLE)
    stored: list[int] = []

    def on_response(response) -> None:
        if _is_upload(response):
            stored.append(response.status)

    page.on("response", on_response)
    inputs = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    inputs.nth(0).set_input_files(str(model))
    inputs.nth(1).set_input_files([str(p) for p in images])
    if labels:
        inputs.nth(2).set_input_files(str(labels))
    expected = 1 + len(images) + (1 if labels else 0)
    for _ in range(600):  # the files upload in the background: submit only once every one is stored
        if len(stored) >= expected:
            break
        page.wait_for_timeout(100)
    page.remove_listener("response", on_response)


def warm_up(url: str, query: str = "") -> None:
    """One page view (of `query`, e.g. "?sample=digits_cnn") before a measurement, as any server gets after start-up
    (first imports happen here)."""
    from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page()
        page.set_default_timeout(300_000)
        page.goto(f"{url}/{query}")
        page.wait_for_selector("text=What we understood:")
        page.wait_for_selector(IDLE)
        browser.close()


# ---- The process tree: the server and its worker processes ----------------------------------------------------------

WORKER_CMD = b"quant_core.serving.worker"  # in a worker process's command line (quant_core.serving.worker)
# How the server logs a run stopped because its browser session left (ui/run.py, quant_core/serving/worker.py).
ABANDONED = re.compile(r"^(\S+ \S+) WARNING quant_core.serving.worker: job 'compare' in worker process (\d+) stopped: "
                       r"stopped: the browser session that asked for it is gone", re.MULTILINE)


def process_tree(root: int) -> list[int]:
    """`root` and every process descending from it, read from /proc (workers start sessions of their own, but
    their parent is still the server)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(proc.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def rss_mb(pid: int) -> float:
    """A process's resident memory (VmRSS) in MB; 0 when it is gone."""
    try:
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0.0
    return int(line.split()[1]) / 1024


def is_worker(pid: int) -> bool:
    """Whether the process is a worker (`python -m quant_core.serving.worker`)."""
    try:
        return WORKER_CMD in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class TreeWatch:
    """Samples the whole process tree of the server every `every_s` from a thread: the sum of every process's RSS
    (server and workers), the server's own RSS, the largest worker's and how many workers are alive; keeps the
    peaks."""

    def __init__(self, server_pid: int, *, every_s: float = 0.2) -> None:
        self.server_pid, self.every_s = server_pid, every_s
        self.peak_total_mb = self.peak_server_mb = self.peak_worker_mb = 0.0
        self.max_workers = 0
        self.samples = 0
        self.workers_seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tree-watch", daemon=True)

    def __enter__(self) -> TreeWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def workers(self) -> list[int]:
        """The worker processes alive now."""
        return [pid for pid in process_tree(self.server_pid)[1:] if is_worker(pid) and alive(pid)]

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            tree = process_tree(self.server_pid)
            workers = [pid for pid in tree[1:] if is_worker(pid) and alive(pid)]
            self.workers_seen.update(workers)
            self.max_workers = max(self.max_workers, len(workers))
            sizes = {pid: rss_mb(pid) for pid in tree}
            self.peak_server_mb = max(self.peak_server_mb, sizes[self.server_pid])
            self.peak_worker_mb = max([self.peak_worker_mb, *(sizes[pid] for pid in workers)])
            self.peak_total_mb = max(self.peak_total_mb, sum(sizes.values()))
            self.samples += 1


@dataclass(frozen=True)
class Bound:
    """What the warm pool's design allows: at most QW_WARM_WORKERS idle warm workers, QW_WORKERS running a job and
    one spare (quant_core/serving/pool.py). A running job is killed above QW_JOB_MEMORY_MB, an idle worker above
    QW_WORKER_KEEP_MB is closed after its request; both are set to `worker_mb` here, so every worker stays under it.
    """

    warm_workers: int
    workers: int
    worker_mb: int  # QW_JOB_MEMORY_MB = QW_WORKER_KEEP_MB
    server_mb: int  # the allowance for the Streamlit server itself (not a setting: measured ~200 MB)

    @property
    def max_workers(self) -> int:
        return self.warm_workers + self.workers + 1

    @property
    def total_mb(self) -> int:
        return self.server_mb + self.max_workers * self.worker_mb

    def env(self) -> dict[str, str]:
        """The server's settings that make this the bound."""
        return {"QW_WARM_WORKERS": str(self.warm_workers), "QW_WORKERS": str(self.workers),
                "QW_JOB_MEMORY_MB": str(self.worker_mb), "QW_WORKER_KEEP_MB": str(self.worker_mb),
                "QW_SPARE_WORKER": "1"}

    @property
    def words(self) -> str:
        return (f"{self.server_mb} MB server + ({self.warm_workers} warm + {self.workers} running + 1 spare) x "
                f"{self.worker_mb} MB = {self.total_mb} MB")


# ---- Visits: one user each, in a browser session of their own -------------------------------------------------------

@dataclass(frozen=True)
class Upload:
    """Files a visit puts in Model & data's uploaders."""

    model: Path
    images: Path  # a .zip of class folders (labels from the folder names)
    labels: Path | None = None


@dataclass(frozen=True)
class Visit:
    """What one user does: opens a link, maybe uploads files, runs the one-click comparison, then what-ifs on
    Compare, a Full dataset evaluation, or closes the browser while the comparison runs."""

    name: str
    query: str  # the link opened, e.g. "?sample=digits_cnn&cal=10" (an upload starts from a sample's page)
    upload: Upload | None = None
    what_ifs: tuple[str, ...] = ()  # Compare's What if… widgets clicked in turn: "mode.int16x8", "per_channel",
    # "cal_count" (the calibration slider moved to its minimum, 1, with the keyboard)
    evaluate: bool = False  # then Full dataset: the first dataset offered, every variant
    leave: bool = False  # closes its browser once a worker works on its comparison, without waiting for it


@dataclass(frozen=True)
class Outcome:
    """What a visit saw."""

    visit: Visit
    rows: dict[str, dict[str, str]]  # Compare's table at the end ({} for a visit that left)
    seconds: float  # from its first click (upload or run) to the end of its last step
    errors: tuple[str, ...]  # error messages and tracebacks shown on its pages
    calibration: int | None = None  # the What if… slider's count at the end (when a what-if moved it)
    evaluation: dict | None = None  # Full dataset's JSON download
    left_at: float | None = None  # time.time() when it closed its browser


def zipped(folder: Path, archive: Path) -> Path:
    """A .zip of a folder of class folders (its PNGs), as a user uploads one."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*.png")):
            zf.write(path, path.relative_to(folder.parent))
    return archive


# The progress bar tells a step of the worker's job (not the server's "Starting…" or "Waiting for a worker…"): the
# earliest moment a browser can leave with its comparison's job running in a worker, seconds before the run ends.
IN_WORKER_JS = """() => {
    const bar = document.querySelector('[data-testid="stProgress"]');
    const text = bar === null ? "" : bar.innerText;
    return text.includes("variants measured") && !/Starting|Waiting for a worker/.test(text);
}"""


async def _upload(page, upload: Upload) -> None:
    """Model & data: "Upload my own", the files, "Use these files"; waits for the model's description."""
    await page.get_by_text("Upload my own").click()
    await page.wait_for_selector(IDLE)
    stored: list[int] = []

    def on_response(response) -> None:
        if _is_upload(response):
            stored.append(response.status)

    page.on("response", on_response)
    inputs = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    await inputs.nth(0).set_input_files(str(upload.model))
    await inputs.nth(1).set_input_files(str(upload.images))
    if upload.labels is not None:
        await inputs.nth(2).set_input_files(str(upload.labels))
    expected = 2 + (upload.labels is not None)
    for _ in range(3000):  # the files upload in the background: a click meanwhile can be lost; submit once stored
        if len(stored) >= expected:
            break
        await page.wait_for_timeout(100)
    page.remove_listener("response", on_response)
    await page.get_by_role("button", name="Use these files").click()
    await page.wait_for_selector(f"text=your model {upload.model.name}")  # the sidebar follows the upload
    await page.wait_for_selector("text=What we understood:")
    await page.wait_for_selector(IDLE)


async def _what_if(page, key: str) -> None:
    """One What if… change on Compare, then waits for its result (another result key) and an idle page."""
    shown = await page.evaluate(RESULT_KEY_JS)
    if key == "cal_count":
        await page.locator(".st-key-w-cmp-cal_count input[type=range]").first.press("Home")  # react-aria: its minimum
    else:
        await page.locator(f".st-key-w-cmp-{key.replace('.', '-')} label").first.click()
    await page.wait_for_selector(done_other_than(shown))
    await page.wait_for_selector(IDLE)


async def _evaluate(page) -> dict:
    """Full dataset: evaluates every variant on the first dataset offered; returns its JSON download."""
    await page.locator('[data-testid="stSidebarNavLink"]', has_text="Full dataset").click()
    await page.wait_for_selector('h1:has-text("Full dataset")')
    await page.wait_for_selector(IDLE)
    await page.locator('button[data-testid^="stBaseButton-"]', has_text="Evaluate on").click()
    await page.wait_for_selector("text=/^On /")
    await page.wait_for_selector(IDLE)
    async with page.expect_download() as download:
        await page.get_by_role("button", name=re.compile(r"^Scores and per-image")).click()
    return json.loads(Path(await (await download.value).path()).read_text())


async def _calibration(page) -> int:
    return int(await page.locator(".st-key-w-cmp-cal_count input[type=range]").first.input_value())


async def visit(browser, url: str, plan: Visit, *, timeout_s: float = 900) -> Outcome:
    """Runs `plan` in a new browser context (a new Streamlit session).

    Raises:
        RuntimeError: a step failed or timed out (naming the visit; its page is saved in artifacts/screenshots).
    """
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    try:
        return await _steps(context, page, url, plan, timeout_s)
    except Exception as err:
        shots = REPO / "artifacts" / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"\W+", "_", plan.name)
        with contextlib.suppress(Exception):
            await page.screenshot(path=str(shots / f"load_{name}.png"), full_page=True)
        raise RuntimeError(f"visit {plan.name!r}: {err}") from err
    finally:
        await context.close()


async def _steps(context, page, url: str, plan: Visit, timeout_s: float) -> Outcome:
    """A visit's steps (see `Visit`), each logged as it starts."""
    def step(what: str) -> None:
        log.info("visit %r: %s", plan.name, what)

    page.set_default_timeout(timeout_s * 1000)
    step(f"opens {plan.query}")
    await page.goto(f"{url}/{plan.query}")
    await page.wait_for_selector("text=What we understood:")
    await page.wait_for_selector(IDLE)
    start = time.perf_counter()
    if plan.upload is not None:
        step("uploads")
        await _upload(page, plan.upload)
    step("runs the full comparison")
    await page.get_by_role("button", name="Run the full comparison").click()
    await page.wait_for_selector('h1:has-text("Compare")')
    if plan.leave:  # once the progress bar tells the worker's steps, its job runs in a worker: leave it there
        await page.wait_for_function(IN_WORKER_JS)
        errors = tuple(await page.locator(f"{ERROR}, {EXCEPTION}").all_inner_texts())
        step("closes its browser")
        await context.close()
        return Outcome(plan, {}, time.perf_counter() - start, errors, left_at=time.time())
    await page.wait_for_selector(DONE)
    for key in plan.what_ifs:
        step(f"what if: {key}")
        await _what_if(page, key)
    rows = await page.evaluate(SUMMARY_JS) or {}
    calibration = await _calibration(page) if "cal_count" in plan.what_ifs else None
    errors = tuple(await page.locator(f"{ERROR}, {EXCEPTION}").all_inner_texts())
    evaluation = None
    if plan.evaluate:
        step("evaluates on the full dataset")
        evaluation = await _evaluate(page)
        errors += tuple(await page.locator(f"{ERROR}, {EXCEPTION}").all_inner_texts())
    step("done")
    return Outcome(plan, rows, time.perf_counter() - start, errors, calibration, evaluation)


def run_visits(url: str, plans: list[Visit], *, timeout_s: float = 900) -> list[Outcome]:
    """Runs every visit at once, each in its own browser session (one browser, deprioritized)."""
    import asyncio  # pylint: disable=import-outside-toplevel

    from playwright.async_api import async_playwright  # pylint: disable=import-outside-toplevel

    async def main() -> list[Outcome]:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            deprioritize_clients()
            try:
                return list(await asyncio.gather(*(visit(browser, url, plan, timeout_s=timeout_s) for plan in plans)))
            finally:
                await browser.close()

    return asyncio.run(asyncio.wait_for(main(), timeout=timeout_s + 60))


def abandoned_workers(log: str) -> list[tuple[int, float]]:
    """Workers the server killed because the browser session of their run left: (process id, time.time() of the
    log line, written once the process was killed and reaped)."""
    from datetime import datetime  # pylint: disable=import-outside-toplevel

    return [(int(pid), datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp())
            for stamp, pid in ABANDONED.findall(log)]


# ---- What the engine computes for the same inputs, in this process ---------------------------------------------------

def sample_of(plan: Visit) -> str | None:
    """The bundled sample a visit's link names."""
    from urllib.parse import parse_qsl  # pylint: disable=import-outside-toplevel

    return dict(parse_qsl(plan.query.lstrip("?"))).get("sample")


def settings_after(plan: Visit, calibration: int | None = None):
    """The settings of a visit's last comparison: its link's, changed by its what-ifs (`calibration`: the count
    the slider landed on)."""
    from dataclasses import replace  # pylint: disable=import-outside-toplevel
    from urllib.parse import parse_qsl  # pylint: disable=import-outside-toplevel

    from quant_core import Mode  # pylint: disable=import-outside-toplevel
    from ui.settings import Settings  # pylint: disable=import-outside-toplevel

    params = dict(parse_qsl(plan.query.lstrip("?")))
    settings = Settings() if plan.upload is not None else Settings.from_query(params)
    settings = replace(settings, modes=tuple(m for m in Mode if m in settings.modes))  # the app's order
    for key in plan.what_ifs:
        if key.startswith("mode."):
            mode = Mode(key.split(".", 1)[1])
            modes = tuple(m for m in Mode if (m in settings.modes) != (m is mode))
            settings = replace(settings, modes=modes)
        elif key == "per_channel":
            settings = replace(settings, per_channel=not settings.per_channel)
        elif key == "cal_count":
            if calibration is None:
                raise ValueError("a calibration what-if needs the count the slider landed on")
            settings = replace(settings, calibration_count=calibration)
        else:
            raise ValueError(f"unknown what-if {key!r}")
    return settings


def expected_rows(plan: Visit, calibration: int | None = None, *, images: Path | None = None,
                  cache_dir: Path | None = None) -> dict[str, dict[str, str]]:
    """Compare's table (status, size, agreement, accuracy) for a visit's last comparison, computed by the engine in
    this process with its own cache. `images`: an upload's images as a folder (the app unpacks the .zip)."""
    from quant_core import CompareOptions, CompareRequest, run_compare  # pylint: disable=import-outside-toplevel
    from quant_core.cache import ArtifactCache  # pylint: disable=import-outside-toplevel
    from ui.inputs import sample_inputs  # pylint: disable=import-outside-toplevel

    settings = settings_after(plan, calibration)
    pictures: tuple[Path, ...]
    if plan.upload is not None:
        model, pictures, labels = plan.upload.model, (images or plan.upload.images,), plan.upload.labels
    else:
        inputs = sample_inputs(sample_of(plan))
        model, pictures, labels = inputs.model, inputs.images, inputs.labels
    request = CompareRequest(str(model), tuple(str(p) for p in pictures), str(labels) if labels else None,
                             CompareOptions(recipes=settings.recipes(), measure_latency=False))
    cache = ArtifactCache(cache_dir or Path(tempfile.mkdtemp(prefix="qw-load-expected-")))
    result = run_compare(request, cache=cache)
    rows = {}
    for v in result.variants:
        rows[v.name] = {"status": "ok" if v.ok else "failed"}
        if v.ok and v.size_bytes is not None:
            rows[v.name] |= {"size (KB)": f"{v.size_bytes / 1024:,.1f}", "agreement": f"{v.top1_agreement:.1%}",
                             "accuracy": f"{v.accuracy:.1%}"}
    return rows


def unexpected_errors(outcome: Outcome, want: dict[str, dict[str, str]]) -> list[str]:
    """The errors a visit saw other than "<variant> failed: …" for the variants the engine also fails."""
    failed = tuple(f"{name} failed:" for name, row in want.items() if row["status"] == "failed")
    return [e for e in outcome.errors if not (failed and e.startswith(failed))]
