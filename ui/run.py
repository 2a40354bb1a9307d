"""Comparisons that run beside the pages: rows stream in, a page change keeps the run, a newer request stops it.

A run is a thread of the server owned by one session (`state.session.run`). It asks the
inputs' warm worker for the comparison and keeps what the worker reports: progress and the
comparison so far (`Progress.partial`). Pages only read it: Compare draws its rows as they
come (`follow`); any page that runs after it ended moves its result into the session
(`collect`, called by the router). Changing page does not stop a run. Starting another run
in the same session cancels the one before (its worker stops at its next step and stays
warm for the new request); a run whose browser session has been gone for QW_ABANDON_S is
stopped and its worker killed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from quant_core import CompareRequest, CompareResult, KeptModels, Progress, Recipe
from quant_core.compare import variant_names
from quant_core.config import config
from quant_core.errors import Cancelled, InternalError, QuantError, report_internal
from ui import charts, engine, resume, sessions, state
from ui.settings import Settings
from ui.widgets import ENGINE_ERRORS, current_inputs, refresh_sidebar, show_error

ABANDON_S = config().abandon_s  # a session gone this long no longer wants its run
_REDRAW_S = 0.2


@dataclass(eq=False)
class Run:
    """One session's comparison in progress (or just ended); written by its thread, read by pages."""

    settings: Settings
    names: tuple[str, ...]  # the variants asked for, in table order
    session_id: str = ""
    started: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    progress: Progress = field(default_factory=lambda: Progress(0.0, "Starting…"))
    partial: CompareResult | None = None  # the variants measured so far
    result: CompareResult | None = None
    models: KeptModels | None = None
    error: QuantError | InternalError | None = None
    collected: bool = False  # its result was moved into the session
    version: int = 0  # bumped at every report: a view redraws when it changed
    _gone_since: float | None = None

    @property
    def finished(self) -> bool:
        return self.done.is_set()

    @property
    def measured(self) -> int:
        """How many variants have their numbers (latency may still be coming)."""
        return len(self.partial.variants) if self.partial is not None else 0

    @property
    def tally(self) -> str:
        """How far it is, in the words of every place that shows it (the progress bar, the sidebar)."""
        return f"{self.measured} of {len(self.names)} variants measured"

    def update(self, progress: Progress) -> None:
        """The worker's report (called in the run's thread); stops the run when its session is gone."""
        self.check_session()
        if progress.partial is not None:
            self.partial = progress.partial
        self.progress = progress
        self.version += 1

    def check_session(self) -> None:
        """Raises `Cancelled` once the browser session that asked for this run has been gone for ABANDON_S
        (called in the run's thread while its job runs, whether or not the job reports)."""
        if not self.session_id or sessions.is_active(self.session_id) or not sessions.runtime_exists():
            self._gone_since = None
            return
        now = time.monotonic()
        self._gone_since = self._gone_since or now
        if now - self._gone_since > ABANDON_S:
            raise Cancelled("stopped: the browser session that asked for it is gone")


def current() -> Run | None:
    """The session's latest run (running or ended), if any."""
    return state.session.run


def live() -> Run | None:
    """The session's run while it is still working."""
    run = current()
    return run if run is not None and not run.finished else None


def start(settings: Settings | None = None, *, recipes: tuple[Recipe, ...] | None = None) -> Run:
    """Starts a comparison of the current inputs with `settings` (default: the session's); cancels the one before.

    `recipes` are the settings already compiled (`widgets.accept_settings`): a request compiles
    its settings once, here when they are not.

    Raises:
        InputError: the settings cannot be built.
    """
    inputs = current_inputs()
    override = state.session.override
    settings = settings or state.session.settings
    request = engine.compare_request(inputs, override, settings, recipes=recipes)
    previous = live()
    if previous is not None:
        previous.cancel.set()
    work_dir = state.workdir()
    run = Run(settings, variant_names(request.options.recipes), session_id=sessions.current_session_id())
    if _answer_from_cache(run, request, work_dir):
        return run
    jobs, cache, earlier = engine.client(inputs, override), engine.artifact_cache(), state.session.result

    def work() -> None:
        if previous is not None:  # its worker serves this request once it stopped
            previous.done.wait()
        try:
            result = engine.compare(request, jobs, on_progress=run.update, work_dir=work_dir, earlier=earlier,
                                    cancel=run.cancel, cache=cache, watch=run.check_session)
            run.models = engine.keep_models(result, work_dir, cache)
            run.result = result
        except ENGINE_ERRORS as err:
            run.error = err
        except Exception as err:  # noqa: BLE001 - a bug: logged with its traceback, shown by its incident id
            run.error = report_internal(err, context="a comparison run")
        finally:
            run.version += 1
            run.done.set()

    state.session.run = run
    threading.Thread(target=work, name=f"compare-{run.session_id[:8]}", daemon=True).start()
    return run


def _answer_from_cache(run: Run, request: CompareRequest, work_dir: Path) -> bool:
    """Ends `run` at once with the stored result of the same request, when there is one: no thread, no worker."""
    hit = engine.cached(request, work_dir)
    if hit is None:
        return False
    try:
        run.models = engine.keep_models(hit, work_dir)
    except QuantError:  # a model left the cache meanwhile: the run builds it again
        return False
    run.result, run.progress = hit, Progress(1.0, "Served from cache", partial=hit)
    run.done.set()
    state.session.run = run
    collect()
    return True


def reset() -> None:
    """Forgets the session's result and stops its run: the inputs or their preprocessing changed."""
    working = live()
    if working is not None:
        working.cancel.set()
    state.session.run = None
    state.session.result = None
    state.session.result_settings = None
    state.session.restored = None


def collect() -> None:
    """Moves an ended run's result into the session (once); the last good result stays when it failed."""
    run = current()
    if run is None or not run.finished or run.collected:
        return
    run.collected = True
    if run.result is not None:
        state.session.result = run.result
        state.session.result_settings = run.settings
        state.session.models = run.models
        state.session.restored = None
        resume.save(run.result, run.settings, current_inputs(), state.session.override)


def show_failure() -> None:
    """The latest run's error, if it failed (a superseded run's cancel is not a failure)."""
    run = current()
    if run is not None and run.finished and run.error is not None and not isinstance(run.error, Cancelled):
        show_error(run.error)


def follow(run: Run, *, table: bool = True) -> None:
    """Draws a running comparison until it ends (rows as they are measured), then reruns the page.

    The page stays interactive: any widget change interrupts this loop (the run goes on).
    """
    bar = st.progress(0.0, text="Starting…")
    rows = st.empty()
    seen = -1
    while not run.finished:
        if run.version != seen:
            seen = run.version
            p = run.progress
            bar.progress(min(max(p.fraction, 0.0), 1.0),
                         text=f"{p.message} · {run.tally} · {time.monotonic() - run.started:.0f} s")
            refresh_sidebar()  # drawn before the page: it would say how far the run was when the page began
            if table:
                rows.table(charts.live_frame(run.partial, run.names, current=p.variant,
                                             timing=True).set_index("variant"))
        time.sleep(_REDRAW_S)
    st.rerun()


def need_result() -> CompareResult:
    """The last comparison; while the first one runs, its progress until it is done; else how to get one."""
    collect()  # a run may have ended since the router collected
    result = state.session.result
    if result is not None:
        return result
    run = live()
    if run is not None:
        st.info("The comparison is running; its results appear here when it is done.", icon=":material/pending:")
        follow(run, table=False)
    show_failure()
    st.info("No comparison yet. Choose variants on **Quantize** and press **Run**, "
            "or use the one-click run on **Model & data**.", icon=":material/info:")
    st.page_link("pages/quantize.py", label="Go to Quantize", icon=":material/tune:")
    st.stop()
    raise AssertionError("unreachable")  # st.stop raises
