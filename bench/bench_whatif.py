"""What a user waits for on the default sample (ImageNet MobileNetV2), in a real browser: issue 10's targets.

Playwright drives Debian's chromium against `streamlit run`, twice, each a fresh server:
  (a) cold machine: an empty QUANT_CACHE_DIR;
  (b) warm disk cache: the same cache directory after (a) with its `results` folder removed, so
      descriptions, float conversions and builds are on disk but every comparison is measured again.
On each server, in this order (one browser session, except the last step):
  1. `streamlit run` to the first page with the sample described; 5 s of reading, then the one-click
     "Run the full comparison": first quantized row, all seven rows with numbers, every latency (DONE);
  2. display change (the Mistakes variant selectbox, as bench_browser.py) and page changes
     (Compare -> Ops -> Compare);
  3. What if… toggles: a mode off (to DONE), then on again until its row has size and agreement;
  4. calibration count changed on the slider until the int8 rows have their new numbers;
  5. int16x8 toggled on after a calibration change (built now), once;
  6. per-channel off (updated rows), then weight_only on (built now at per-tensor), once each;
  7. the one-click run again in a new browser session (the same request: cached).
/_stcore/health is probed every 250 ms throughout.

Row states are read in the page: a poller (every 20 ms) records each change of the summary table,
the progress bar and the script state with `performance.now()`, and a capturing listener the time of
the click's pointerdown (a drag's pointerup), so the timings are click-to-paint in the browser, not
Playwright round trips.

Usage: .venv/bin/python bench/bench_whatif.py [--quick] [--no-write] [--replay FILE]
Writes its section of bench/RESULTS.md (between the whatif-bench markers).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, UTC
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
from live_server import (CHROMIUM, DONE, ERROR, IDLE, LAUNCH_ARGS, SUMMARY_JS, HealthProbe,  # noqa: E402  pylint: disable=wrong-import-position
                         streamlit_server)
from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402  pylint: disable=wrong-import-position
from results_md import write_section  # noqa: E402  pylint: disable=wrong-import-position

SAMPLE = "mobilenet_v2_imagenet"
DESCRIBED = f"text=What we understood: {SAMPLE}"
ALL = ("float32", "weight_only", "dynamic_range", "float16", "int8", "int8_float_io", "int16x8")
INT8_ROWS = ("int8", "int8_float_io")
CALIBRATED = ("int8", "int8_float_io", "int16x8")
PENDING = ("building…", "waiting", "")
MEASURING = "measuring latency…"
MISSING = "–"  # quant_core.results.summary.MISSING: a number not measured
READ_S = 5.0  # how long the bench "reads" the first page before the one-click run
TIMEOUT_S = 600.0  # for a comparison run to reach a state
WAIT_S = 180.0  # for anything else on a page
# Calibration counts set on the slider (the sample has 22 photos: every value below changes the calibration set).
CAL_VALUES = (10, 17, 6, 21, 14)
CAL_EXTRA = 3  # the calibration change before int16x8 is toggled on again

# Installs (or resets) the recorder: every change of what the Compare page shows, with its performance.now().
# The action's time is its pointer event `on` (pointerdown for a click, pointerup for a drag's release).
POLLER_JS = """(on) => {
  const summary = %(summary)s;
  if (!window.__qwClick) {
    window.__qwClick = true;
    for (const type of ['pointerdown', 'pointerup'])
      document.addEventListener(type, () => {
        const qw = window.__qw;
        if (qw && qw.click === null && qw.on === type) qw.click = performance.now();
      }, true);
  }
  if (window.__qw) clearInterval(window.__qw.timer);
  const qw = window.__qw = {click: null, on: on, tl: [], last: ''};
  const snap = () => {
    const table = document.querySelector('[data-testid="stTable"] table');
    const holder = table && table.closest('[data-stale]');
    const bar = document.querySelector('[data-testid="stProgress"]');
    const rows = {};
    for (const [name, r] of Object.entries(summary() || {}))
      rows[name] = [r['status'] || '', r['size (KB)'] || '', r['agreement'] || ''];
    const h1 = document.querySelector('h1');
    return {
      stale: holder ? holder.getAttribute('data-stale') === 'true' : null,
      progress: bar ? bar.innerText.trim().replace(/ · \\d+ s$/, '') : null,
      idle: !!document.querySelector(%(idle)s),
      done: !!document.querySelector(%(done)s),
      fresh_chart: !!document.querySelector(
        '[data-testid="stElementContainer"][data-stale="false"] [data-testid="stPlotlyChart"]'),
      h1: h1 ? h1.innerText.trim() : null,
      rows: rows,
    };
  };
  const tick = () => {
    const s = snap();
    const key = JSON.stringify(s);
    if (key !== qw.last) { qw.last = key; s.t = performance.now(); qw.tl.push(s); }
  };
  tick();
  qw.timer = setInterval(tick, 20);
}""".replace("%(summary)s", SUMMARY_JS).replace("%(idle)s", json.dumps(IDLE)).replace("%(done)s", json.dumps(DONE))

Snapshot = dict
Predicate = Callable[[Snapshot], bool]


def has_numbers(s: Snapshot, names: tuple[str, ...]) -> bool:
    """Every row in `names` is in a fresh table with its size and agreement (latency may still be coming),
    or failed (the notes list failures)."""
    if s["stale"] is not False:
        return False
    for name in names:
        row = s["rows"].get(name)
        if row is None or row[0] in PENDING:
            return False
        if row[0] != "failed" and (row[1] in ("", MISSING) or row[2] in ("", MISSING)):
            return False
    return True


def run_seen(s: Snapshot) -> bool:
    """A comparison is running: its progress bar, or a row still to be measured."""
    return s["progress"] is not None or any(r[0] in PENDING or r[0] == MEASURING for r in s["rows"].values())


def row_ready(name: str) -> Predicate:
    """The row `name` has its size and agreement."""
    return lambda s: has_numbers(s, (name,))


def finished(s: Snapshot, names: tuple[str, ...] | None = None) -> bool:
    """The finished comparison (DONE: idle with a chart), freshly drawn, every row ok or failed."""
    rows = s["rows"]
    return (s["done"] and s["fresh_chart"] and s["stale"] is False and s["progress"] is None and bool(rows)
            and all(r[0] in ("ok", "failed") for r in rows.values())
            and (names is None or tuple(rows) == names))


class After:
    """A predicate that holds once `first` has held on an earlier (or the same) snapshot and `then` holds."""

    def __init__(self, first: Predicate, then: Predicate) -> None:
        self.first, self.then, self.armed = first, then, False

    def __call__(self, s: Snapshot) -> bool:
        self.armed = self.armed or self.first(s)
        return self.armed and self.then(s)


def pending_then_numbers(names: tuple[str, ...]) -> Predicate:
    """Each of `names` was seen waiting or building after the action, then all of them have numbers."""
    seen: set[str] = set()

    def check(s: Snapshot) -> bool:
        seen.update(n for n in names if n in s["rows"] and s["rows"][n][0] in PENDING)
        return seen.issuperset(names) and has_numbers(s, names)
    return check


def done_after_change(names: tuple[str, ...] | None = None) -> Predicate:
    """DONE after the page was seen not done (a click first leaves the old finished page in place).

    Only for a change of the variants shown: the old page then never matches `names`.
    """
    return After(lambda s: not s["done"], lambda s: finished(s, names))


def done_after_run(names: tuple[str, ...] | None = None) -> Predicate:
    """DONE after a run was seen (progress bar or rows to come): for an option change, which keeps the rows'
    names; the old finished page can flash up as fresh right after the click."""
    return After(run_seen, lambda s: finished(s, names))


@dataclass
class Action:
    """One timed user action: seconds from the click to each event, and what the page showed meanwhile."""

    events: dict[str, float]
    progress: list[str] = field(default_factory=list)  # the progress bar's distinct messages
    timeline: list[Snapshot] = field(default_factory=list)
    errors: tuple[str, ...] = ()  # the error messages on the page at the end

    def at(self, name: str) -> float:
        return self.events[name]

    def message_at(self, prefix: str) -> float | None:
        """When the progress bar first showed a message starting with `prefix` (s after the click)."""
        return next((s["dt"] for s in self.timeline if (s["progress"] or "").startswith(prefix)), None)

    def last_progress(self) -> float | None:
        """The last time the progress bar was on the page (s after the click)."""
        return max((s["dt"] for s in self.timeline if s["progress"]), default=None)

    def failed(self) -> list[str]:
        """The rows that ended failed, in the last snapshot."""
        last = self.timeline[-1]["rows"] if self.timeline else {}
        return [name for name, r in last.items() if r[0] == "failed"]

    def row_times(self, name: str) -> tuple[float | None, float | None]:
        """When `name` was first building and when it first had numbers (s after the click)."""
        building = ready = None
        for s in self.timeline:
            row = s["rows"].get(name)
            if row and row[0] == "building…" and building is None:
                building = s["dt"]
            if row and ready is None and has_numbers(s, (name,)):
                ready = s["dt"]
        return building, ready


def timed(page, act: Callable[[], None], events: dict[str, Predicate], final: str,
          timeout_s: float = TIMEOUT_S, on: str = "pointerdown") -> Action:
    """Runs `act` (which clicks) and waits until the `final` event; each event's first time after the click."""
    page.evaluate(POLLER_JS, on)
    act()
    start = time.monotonic()
    seen: list[Snapshot] = []
    found: dict[str, float] = {}
    click = None
    while True:
        got = page.evaluate("(n) => ({click: window.__qw.click, tl: window.__qw.tl.slice(n)})", len(seen))
        click = got["click"] if click is None else click
        for s in got["tl"]:
            seen.append(s)
            if click is None or s["t"] < click:
                continue
            s["dt"] = (s["t"] - click) / 1000
            for name, pred in events.items():
                if name not in found and pred(s):
                    found[name] = s["dt"]
        if final in found:
            break
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"no {final!r} within {timeout_s:.0f} s; last state: {seen[-1] if seen else None}")
        time.sleep(0.05)
    page.evaluate("() => clearInterval(window.__qw.timer)")
    after = [s for s in seen if "dt" in s]
    progress = list(dict.fromkeys(s["progress"] for s in after if s["progress"]))
    return Action(found, progress, after, tuple(page.locator(ERROR).all_inner_texts()))


def goto(page, title: str) -> Action:
    """Sidebar link to the page titled `title`: times to its title drawn and to the script idle."""
    link = page.locator('[data-testid="stSidebarNavLink"]', has_text=title)
    return timed(page, link.click, {"title": lambda s: s["h1"] == title,
                                    "idle": lambda s: s["h1"] == title and s["idle"]}, "idle")


def open_option(page, name: str):
    """Opens the Mistakes section's Variant selectbox until its option `name` shows (a click during a
    re-render can miss); returns the option."""
    option = page.get_by_role("option", name=name, exact=True)
    for _ in range(10):
        page.wait_for_selector(IDLE)
        page.locator('[data-testid="stSelectbox"]', has_text="Variant").last.click()
        try:
            option.wait_for(timeout=5000)
            return option
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    page.screenshot(path=str(Path(tempfile.gettempdir()) / "qw-whatif-selectbox.png"), full_page=True)
    raise RuntimeError(f"the Variant selectbox did not offer {name!r}")


def toggle(page, key: str) -> Callable[[], None]:
    """A click on the What if… toggle whose widget key is `w.cmp.<key>`."""
    return lambda: page.locator(f".st-key-w-cmp-{key} label").first.click()


def cal_value(page) -> int:
    return int(page.locator(".st-key-w-cmp-cal_count input[type=range]").input_value())


def set_calibration(page, value: int) -> Callable[[], None]:
    """Drags the slider's thumb to `value` (1..500 over the track; time it with on="pointerup": the release).

    A drag, not a click on the track: values below the sample's 22 photos lie within a few pixels of
    each other, under the thumb.
    """
    def act() -> None:
        track = page.locator('.st-key-w-cmp-cal_count [role="group"] > div').first.bounding_box()
        thumb = page.locator('.st-key-w-cmp-cal_count [role="group"] > div > div[style*="left"]').first
        box = thumb.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + (value - cal_value(page)) / 499 * track["width"], y, steps=5)
        page.mouse.up()
    return act


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


@dataclass
class StateResult:
    """Everything measured on one server."""

    name: str
    healthy_s: float = 0.0
    first_page_s: float = 0.0
    click_after_s: float = 0.0
    one_click: Action = field(default_factory=lambda: Action({}))
    display_ms: list[float] = field(default_factory=list)
    to_ops: list[Action] = field(default_factory=list)
    to_compare: list[Action] = field(default_factory=list)
    toggles_off: list[tuple[str, Action]] = field(default_factory=list)
    toggles_on: list[tuple[str, Action]] = field(default_factory=list)
    calibrations: list[tuple[int, Action]] = field(default_factory=list)
    int16x8_on: Action = field(default_factory=lambda: Action({}))
    int16x8_cal: int = 0
    per_channel: Action = field(default_factory=lambda: Action({}))
    weight_only_on: Action = field(default_factory=lambda: Action({}))
    cached: Action = field(default_factory=lambda: Action({}))
    health: dict[str, float] = field(default_factory=dict)
    load: tuple[float, float] = (0.0, 0.0)  # 1-min load average before and after
    title_s: float = 0.0  # `streamlit run` to the first page's title

    @property
    def to_ops_ms(self) -> list[float]:
        return [a.at("idle") * 1000 for a in self.to_ops]

    @property
    def to_compare_ms(self) -> list[float]:
        return [a.at("idle") * 1000 for a in self.to_compare]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure_state(p, name: str, cache_dir: Path, reps: dict[str, int]) -> StateResult:
    """Starts a server on `cache_dir` and runs the whole sequence in a browser."""
    out = StateResult(name)
    browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)  # launched before the server starts
    sessions = tempfile.mkdtemp(prefix="qw-whatif-sessions-")  # each session keeps copies of its models
    env = {"QUANT_CACHE_DIR": str(cache_dir), "QW_SESSION_ROOT": sessions}
    before = os.getloadavg()[0]
    t_start = time.perf_counter()
    try:
        with streamlit_server(env) as server, HealthProbe(server.url) as health:
            out.healthy_s = server.started_s
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(WAIT_S * 1000)
            page.goto(server.url)
            page.wait_for_selector('h1:has-text("Model & data")')
            out.title_s = time.perf_counter() - t_start
            page.wait_for_selector(DESCRIBED)
            out.first_page_s = time.perf_counter() - t_start
            log(f"[{name}] health {out.healthy_s:.2f} s, title {out.title_s:.2f} s, "
                f"first page {out.first_page_s:.2f} s")
            button = page.get_by_role("button", name="Run the full comparison")
            button.wait_for()
            page.wait_for_timeout(max(0.0, READ_S - (time.perf_counter() - t_start - out.first_page_s)) * 1000)
            out.click_after_s = time.perf_counter() - t_start - out.first_page_s
            first_row: Predicate = lambda s: s["stale"] is False and any(  # noqa: E731
                n != "float32" and r[0] not in PENDING and r[1] for n, r in s["rows"].items())
            out.one_click = timed(page, button.click, {
                "first quantized row": first_row, "all seven": lambda s: has_numbers(s, ALL),
                "done": lambda s: finished(s, ALL)}, "done")
            log(f"[{name}] one-click {out.one_click.events}")

            # Display change: another variant's mistakes (a fragment rerun with every number computed).
            for k in range(reps["display"]):
                target = "int8" if k % 2 == 0 else "float32"
                option = open_option(page, target)
                t0 = time.perf_counter()
                option.click()
                page.wait_for_selector(f"text={target} gets")
                page.wait_for_selector(IDLE)
                out.display_ms.append((time.perf_counter() - t0) * 1000)
            for _ in range(reps["pages"]):
                out.to_ops.append(goto(page, "Ops"))
                out.to_compare.append(goto(page, "Compare"))
            page.wait_for_selector(DONE)
            log(f"[{name}] display {[round(x) for x in out.display_ms]} ms, to Ops "
                f"{[round(x) for x in out.to_ops_ms]} ms, to Compare {[round(x) for x in out.to_compare_ms]} ms")

            # What if…: a mode off, then on again.
            for k in range(reps["toggles"]):
                mode = ("weight_only", "float16", "dynamic_range")[k % 3]
                without = tuple(m for m in ALL if m != mode)
                off = timed(page, toggle(page, f"mode-{mode}"), {"done": done_after_change(without)}, "done")
                on = timed(page, toggle(page, f"mode-{mode}"), {
                    "row": row_ready(mode), "done": done_after_change(ALL)}, "done")
                out.toggles_off.append((mode, off))
                out.toggles_on.append((mode, on))
                log(f"[{name}] {mode} off {off.events}, on {on.events} {on.progress}")

            # Calibration count: the int8 rows (and int16x8) are built again.
            previous = {cal_value(page)}
            for value in CAL_VALUES[:reps["calibration"]]:
                act = set_calibration(page, value)
                action = timed(page, act, {
                    "int8 rows": pending_then_numbers(INT8_ROWS), "changed rows": pending_then_numbers(CALIBRATED),
                    "done": done_after_run(ALL)}, "done", on="pointerup")
                got = cal_value(page)
                if got in previous:  # a repeated request is answered from the results cache: not a warm build
                    raise RuntimeError(f"the slider landed on {got} again (wanted {value})")
                previous.add(got)
                out.calibrations.append((got, action))
                log(f"[{name}] calibration {got}: {action.events}")

            # int16x8 on again after a calibration change: its row is built now.
            without = ALL[:-1]
            timed(page, toggle(page, "mode-int16x8"), {"done": done_after_change(without)}, "done")
            timed(page, set_calibration(page, CAL_EXTRA), {"done": done_after_run(without)}, "done", on="pointerup")
            out.int16x8_cal = cal_value(page)
            out.int16x8_on = timed(page, toggle(page, "mode-int16x8"), {
                "row": row_ready("int16x8"), "done": done_after_change(ALL)}, "done")
            log(f"[{name}] int16x8 on at calibration {out.int16x8_cal}: {out.int16x8_on.events}")

            # Per-channel off (weight_only off first), then weight_only on: built now at per-tensor.
            without = tuple(m for m in ALL if m != "weight_only")
            timed(page, toggle(page, "mode-weight_only"), {"done": done_after_change(without)}, "done")
            changed = tuple(m for m in without if m != "float32")
            out.per_channel = timed(page, toggle(page, "per_channel"), {
                "int8 rows": pending_then_numbers(INT8_ROWS), "changed rows": pending_then_numbers(changed),
                "done": done_after_run(without)}, "done")
            out.weight_only_on = timed(page, toggle(page, "mode-weight_only"), {
                "row": row_ready("weight_only"), "done": done_after_change(ALL)}, "done")
            log(f"[{name}] per-channel off {out.per_channel.events}; weight_only on {out.weight_only_on.events}")
            context.close()

            # The same one-click request again, in a new session.
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(WAIT_S * 1000)
            page.goto(server.url)
            page.wait_for_selector(DESCRIBED)
            page.wait_for_selector(IDLE)
            button = page.get_by_role("button", name="Run the full comparison")
            out.cached = timed(page, button.click, {"done": lambda s: finished(s, ALL)}, "done")
            log(f"[{name}] same request again (new session): {out.cached.events}")
            context.close()
        out.health = health.summary()
    finally:
        browser.close()
        shutil.rmtree(sessions, ignore_errors=True)
    out.load = (before, os.getloadavg()[0])
    log(f"[{name}] health {out.health}, load {out.load}")
    return out


# ---------------------------------------------------------------- report

def verdict(value: float | None, target: float | None) -> str:
    if value is None or target is None:
        return "-"
    return "PASS" if value <= target else "MISS"


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f} ms"


def spread(xs: list[float], unit: str = "s") -> str:
    if len(xs) < 2:
        return ""
    return f" ({min(xs):.2f}–{max(xs):.2f})" if unit == "s" else f" ({min(xs):.0f}–{max(xs):.0f})"


def _span(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def one_click_causes(r: StateResult) -> dict[str, str]:
    """Measured reasons for the one-click timings: the wait for a worker, and int16x8's row."""
    a = r.one_click
    _, f32 = a.row_times("float32")
    b16, r16 = a.row_times("int16x8")
    waited = a.message_at("Waiting for a worker")
    resumed = next((s["dt"] for s in a.timeline if waited is not None and s["dt"] > waited and s["progress"]
                    and not s["progress"].startswith("Waiting")), None)
    causes = {}
    if waited is not None and resumed is not None and f32 is not None:
        causes["first"] = (f"the run waited {resumed - waited:.1f} s (to {resumed:.1f} s) for its worker, busy "
                           f"with the background preparation that starts with the description "
                           f"{r.click_after_s:.0f} s before the click (model load, float conversion, float32 "
                           f"baseline); float32's row at {f32:.1f} s")
    elif f32 is not None:
        causes["first"] = f"float32's row only at {f32:.1f} s"
    if b16 is not None and r16 is not None:
        causes["all"] = (f"int16x8's row: {r16 - b16:.1f} s from building to numbers, {b16:.1f} s to "
                         f"{r16:.1f} s (evaluation on reference kernels)")
    return causes


def building_cause(action: Action, name: str) -> str:
    """How long the row `name` showed "building…" before its numbers."""
    span = _span(*action.row_times(name))
    return "" if span is None else f"{name} row building {span:.1f} s"


def cached_cause(action: Action) -> str:
    """Where a cached answer's time goes: the run's progress bar, the finished page's script, its charts."""
    shown = "; ".join(m.split(" · ")[0] for m in action.progress) or "-"
    idle = next((s["dt"] for s in action.timeline if s["idle"] and s["rows"] and s["progress"] is None), None)
    tail = (f"; the script is done (table shown) at {idle:.1f} s, the Plotly charts appear at "
            f"{action.at('done'):.1f} s (a new browser session loads and draws Plotly)") if idle is not None else ""
    return f"progress bar ({shown}) until {action.last_progress() or 0:.1f} s" + tail


def int8_cause(actions: list[Action]) -> str:
    """The int8 row's build (recalibration + conversion) and evaluation, medians over `actions`."""
    def known(xs: list[float | None]) -> list[float]:
        return [x for x in xs if x is not None]
    build = known([_span(a.message_at("Building int8 "), a.message_at("Evaluating int8 ")) for a in actions])
    evaluate = known([_span(a.message_at("Evaluating int8 "), a.row_times("int8")[1]) for a in actions])
    start = known([a.message_at("Building int8 ") for a in actions])
    if not build or not evaluate:
        return ""
    return (f"int8 starts building at {median(start):.1f} s; its build (recalibration + conversion) takes "
            f"{median(build):.1f} s, its evaluation {median(evaluate):.1f} s; int8_float_io follows")


def build_table(states: list[StateResult]) -> tuple[str, list[str]]:
    """The Markdown table (one value column and verdict per state) and notes."""
    rows: list[tuple[str, str, list[tuple[str, str]], str]] = []  # measurement, target, [(value, verdict)], cause

    def row(label: str, target: str, limit: float | None, values: list[float | None], fmt=fmt_s,
            extras: list[str] | None = None, cause: Callable[[int], str] | None = None) -> None:
        cells, causes = [], []
        for k, v in enumerate(values):
            ok = verdict(v, limit)
            cells.append((fmt(v) + (extras[k] if extras else ""), ok))
            if ok == "MISS" and cause is not None and (c := cause(k)):
                causes.append(f"{states[k].name.split()[0]} {c}")
        rows.append((label, target, cells, "; ".join(causes)))

    n_disp, n_pages = len(states[0].display_ms), len(states[0].to_ops)
    n_tog, n_cal = len(states[0].toggles_on), len(states[0].calibrations)
    oc = [one_click_causes(r) for r in states]
    row("`streamlit run` to /_stcore/health ok", "-", None, [r.healthy_s for r in states])
    row("`streamlit run` to usable first page (sample described)", "<= 3 s", 3.0,
        [r.first_page_s for r in states],
        cause=lambda k: (f"health at {states[k].healthy_s:.1f} s, the page's title at {states[k].title_s:.1f} s "
                         f"(frontend start + first script run), the description "
                         f"{states[k].first_page_s - states[k].title_s:.1f} s later"
                         + (" (a worker imports TensorFlow and loads the model)" if k == 0 else
                            " (read from the disk cache)")))
    row(f"one-click: click after the first page (the bench reads it for {READ_S:.0f} s)", "-", None,
        [r.click_after_s for r in states])
    row("one-click: first quantized row visible", "<= 8 s", 8.0,
        [r.one_click.at("first quantized row") for r in states], cause=lambda k: oc[k].get("first", ""))
    row("one-click: all seven rows with numbers", "<= 25 s", 25.0, [r.one_click.at("all seven") for r in states],
        cause=lambda k: oc[k].get("all", ""))
    row("one-click: every latency measured (DONE)", "-", None, [r.one_click.at("done") for r in states])
    ons = [[a.at("row") for _, a in r.toggles_on] for r in states]
    modes = ", ".join(dict.fromkeys(m for m, _ in states[0].toggles_on))
    row(f"toggle a mode on again after turning it off ({modes}): its row with size + agreement, "
        f"median of {n_tog}", "<= 2 s", 2.0, [median(x) for x in ons], extras=[spread(x) for x in ons])
    row("toggle weight_only on after per-channel was turned off (built now): its row", "<= 2 s", 2.0,
        [r.weight_only_on.at("row") for r in states],
        cause=lambda k: building_cause(states[k].weight_only_on, "weight_only"))
    row("toggle int16x8 on after a calibration change (built now): its row, slow by nature", "-", None,
        [r.int16x8_on.at("row") for r in states])
    offs = [[a.at("done") for _, a in r.toggles_off] for r in states]
    row(f"toggle a mode off: to DONE, median of {n_tog}", "-", None, [median(x) for x in offs],
        extras=[spread(x) for x in offs])
    cal8 = [[a.at("int8 rows") for _, a in r.calibrations] for r in states]
    calall = [[a.at("changed rows") for _, a in r.calibrations] for r in states]
    row(f"change calibration count: int8 + int8_float_io rows updated, median of {n_cal}", "<= 3 s", 3.0,
        [median(x) for x in cal8], extras=[spread(x) for x in cal8],
        cause=lambda k: int8_cause([a for _, a in states[k].calibrations]))
    row("same: all changed rows (int8, int8_float_io, int16x8)", "-", None, [median(x) for x in calall],
        extras=[spread(x) for x in calall])
    row("turn per-channel off: int8 + int8_float_io rows updated", "<= 3 s", 3.0,
        [r.per_channel.at("int8 rows") for r in states],
        cause=lambda k: "; ".join(filter(None, ["the variants before them in the table are rebuilt first",
                                               int8_cause([states[k].per_channel])])))
    row("same: all changed rows (every variant but float32)", "-", None,
        [r.per_channel.at("changed rows") for r in states])
    row("same request again in a new session (cached): click to DONE", "<= 1 s", 1.0,
        [r.cached.at("done") for r in states],
        cause=lambda k: cached_cause(states[k].cached))

    def page_cause(actions: list[Action]) -> Callable[[int], str]:
        return lambda k: (f"title drawn after {median([a.at('title') for a in actions]) * 1000:.0f} ms, "
                          f"then the script runs on for "
                          f"{median([a.at('idle') - a.at('title') for a in actions]) * 1000:.0f} ms (medians)")
    row(f"page change Compare -> Ops, median of {n_pages}", "<= 500 ms", 500.0,
        [median(r.to_ops_ms) for r in states], fmt=fmt_ms, extras=[spread(r.to_ops_ms, "ms") for r in states],
        cause=lambda k: page_cause(states[k].to_ops)(k))
    row(f"page change Ops -> Compare (results shown), median of {n_pages}", "<= 500 ms", 500.0,
        [median(r.to_compare_ms) for r in states], fmt=fmt_ms,
        extras=[spread(r.to_compare_ms, "ms") for r in states], cause=lambda k: page_cause(states[k].to_compare)(k))
    row(f"display change (Mistakes: another variant), median of {n_disp}", "<= 300 ms", 300.0,
        [median(r.display_ms) for r in states], fmt=fmt_ms, extras=[spread(r.display_ms, "ms") for r in states])
    row("/_stcore/health during all of the above, max", "<= 1 s", 1.0,
        [r.health["max"] for r in states],
        extras=[f" ({r.health['count']} probes, median {r.health['median'] * 1000:.0f} ms)" for r in states])

    head = "| measurement | target | " + " | ".join(f"{r.name} | " for r in states) + " | cause of a MISS (measured) |"
    sep = "|---|---:|" + "---:|:---:|" * len(states) + "---|"
    lines = [head, sep]
    for label, target, cells, cause in rows:
        lines.append(f"| {label} | {target} | " + " | ".join(f"{v} | {ok}" for v, ok in cells) + f" | {cause} |")

    notes = []
    for r in states:
        actions = {"one-click": r.one_click, **{f"{m} off": a for m, a in r.toggles_off},
                   **{f"{m} on": a for m, a in r.toggles_on}, **{f"calibration {v}": a for v, a in r.calibrations},
                   "int16x8 on": r.int16x8_on, "per-channel off": r.per_channel,
                   "weight_only on after per-channel off": r.weight_only_on, "cached": r.cached}
        failed = {label: a.failed() for label, a in actions.items() if a.failed()}
        if failed:
            messages = list(dict.fromkeys(m for a in actions.values() for m in getattr(a, "errors", ())))
            notes.append(f"{r.name}: FAILED rows: " + "; ".join(f"{', '.join(names)} after {label}"
                                                             for label, names in failed.items())
                         + (f" ({'; '.join(messages)})" if messages else "") + ".")
        low = {label: [f"{n} {row[2]}" for n, row in a.timeline[-1]["rows"].items() if row[2].endswith("%")
                       and float(row[2].rstrip("%")) < 50] for label, a in actions.items() if a.timeline}
        if any(low.values()):
            notes.append(f"{r.name}: agreement below 50%: " + "; ".join(
                f"{', '.join(rows)} after {label}" for label, rows in low.items() if rows) + ".")
        spans = {name: _span(*r.per_channel.row_times(name)) for name in ALL[1:]}
        notes.append(f"{r.name}: per-channel off, each row from \"building…\" to its numbers: " + ", ".join(
            f"{name} {span:.1f} s" for name, span in spans.items() if span is not None) + ".")
        served = list(dict.fromkeys(msg.split(" · ")[0] for _, a in r.toggles_on for msg in a.progress))
        notes.append(f"{r.name}: calibration counts set {[v for v, _ in r.calibrations]} (then {r.int16x8_cal} "
                     f"before int16x8 was turned on again); progress while a mode was turned back on: "
                     f"{'; '.join(served) or 'none (the finished table came with the first rerun)'}; "
                     f"1-min load average {r.load[0]:.1f} before, {r.load[1]:.1f} after.")
    return "\n".join(lines), notes


def main() -> None:
    """Both server states, then the table (printed, and written to RESULTS.md unless --no-write)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (for trying)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--replay", type=Path, help="report the measurements saved by an earlier run (a .pickle)")
    args = parser.parse_args()
    reps = ({"display": 3, "pages": 3, "toggles": 2, "calibration": 1} if args.quick else
            {"display": 10, "pages": 10, "toggles": 5, "calibration": 5})
    from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel

    if args.replay:
        cold, warm, took, when = pickle.loads(args.replay.read_bytes())
    else:
        cache = Path(tempfile.mkdtemp(prefix="qw-whatif-cache-"))
        started = time.perf_counter()
        try:
            with sync_playwright() as p:
                cold = measure_state(p, "(a) cold machine", cache, reps)
                shutil.rmtree(cache / "results")
                warm = measure_state(p, "(b) warm disk cache", cache, reps)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        took, when = (time.perf_counter() - started) / 60, datetime.now(UTC)
        saved = Path(tempfile.gettempdir()) / f"qw-whatif-{when:%Y%m%d-%H%M%S}.pickle"
        saved.write_bytes(pickle.dumps((cold, warm, took, when)))
        log(f"measurements saved: {saved} (--replay {saved} reports them again)")
    table, notes = build_table([cold, warm])
    command = ".venv/bin/python bench/bench_whatif.py" + (" --quick" if len(cold.toggles_on) < 5 else "")
    body = (
        f"## What a user waits for on the ImageNet sample (issue 10)\n\n"
        f"Command: `{command}` ({when:%Y-%m-%d %H:%M UTC}, took {took:.1f} min, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with the browser, "
        f"Debian chromium via Playwright). Default sample `{SAMPLE}` (22 photos, 1000 classes). Two fresh "
        f"`streamlit run`s: **(a) cold machine** (empty QUANT_CACHE_DIR) and **(b) warm disk cache** (the same "
        f"cache directory afterwards with its `results` folder removed: descriptions, float conversions and builds "
        f"on disk, every comparison measured again). Times are click-to-paint read in the page (a 20 ms poller of "
        f"the table, progress bar and script state, and the click's pointer event), except the display change "
        f"(Playwright click to idle, as bench_browser.py). One-click: the bench reads the first page for "
        f"{READ_S:.0f} s before clicking; \"first quantized row\" is the first row other than float32 past "
        f"building/waiting with a size, \"all seven\" every row with an agreement, DONE the finished page with its "
        f"charts. Toggles: with results shown, a mode off (to DONE), then on again until its row has size and "
        f"agreement; turning it on again repeats an earlier request, which the results cache answers, so the two "
        f"\"built now\" rows (a mode off while an option changes, then on) time a real build. Calibration: the "
        f"slider's thumb dragged to a new count below the 22 photos (timed from the release) until the int8 rows "
        f"have their new numbers, then DONE before the next change. Cached: the one-click again in a new browser "
        f"session. Health probed every 250 ms from its own process.\n\n{table}\n\n"
        + "\n".join(f"- {n}" for n in notes))
    print(body)
    if not args.no_write:
        place_after_browser_section()
        write_section("whatif-bench", body)


def place_after_browser_section() -> None:
    """An empty whatif section right after the browser-bench section, the first time (write_section fills it)."""
    from results_md import RESULTS  # pylint: disable=import-outside-toplevel

    text = RESULTS.read_text() if RESULTS.exists() else ""
    begin, end, anchor = "<!-- whatif-bench:begin -->", "<!-- whatif-bench:end -->", "<!-- browser-bench:end -->"
    if begin not in text and anchor in text:
        at = text.index(anchor) + len(anchor)
        RESULTS.write_text(text[:at] + f"\n\n{begin}\n{end}" + text[at:])


if __name__ == "__main__":
    main()
