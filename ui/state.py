"""Every session-state key in one place, with typed accessors.

Data that must survive page changes lives under these non-widget keys; widget keys are
prefixed `w.` and may be dropped by Streamlit when their page is not shown.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from quant_core import CompareResult, ModelStore, PreprocessingOverride, Recipe
from quant_core.results.dataset_compare import DatasetEvaluation
from quant_core.results.verdict import Floor
from quant_core.store.publications import Publication, Receipt
from quant_core.tune import Objective, Step, TuneResult
from ui import sessions
from ui.inputs import Inputs
from ui.settings import Reading, Settings

if TYPE_CHECKING:  # ui.run keeps its runs here: a run-time import would be a circle
    from ui.run import Run

T = TypeVar("T")


class _Key(Generic[T]):
    """One non-widget session-state key, read and written as an attribute of `Session`; None when unset."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __get__(self, session: object, owner: type | None = None) -> T | None:
        return st.session_state.get(self.key)

    def __set__(self, session: object, value: T | None) -> None:
        st.session_state[self.key] = value


class _KeyWithDefault(_Key[T]):
    """A key that reads as its default while unset (or set to None)."""

    def __init__(self, key: str, default: Callable[[], T]) -> None:
        super().__init__(key)
        self.default = default

    def __get__(self, session: object, owner: type | None = None) -> T:
        value = st.session_state.get(self.key)
        return self.default() if value is None else value


class Session:
    """This session's state, one typed attribute per key (the keys are what tests read in `AppTest.session_state`)."""

    inputs: _Key[Inputs] = _Key("qw.inputs")  # the model, images and labels in use (see `ui.widgets.current_inputs`)
    override: _KeyWithDefault[PreprocessingOverride] = _KeyWithDefault(  # chosen on the Model & data page
        "qw.override", PreprocessingOverride)
    settings: _KeyWithDefault[Settings] = _KeyWithDefault("qw.settings", Settings)  # the choices, as Quantize shows
    reading: _KeyWithDefault[Reading] = _KeyWithDefault("qw.reading", Reading)  # task and roles set on Model & data
    result: _Key[CompareResult] = _Key("qw.result")  # the last run's comparison
    result_settings: _Key[Settings] = _Key("qw.result_settings")  # the settings `result` was run with
    run: _Key[Run] = _Key("qw.run")  # the session's latest comparison run (working or ended)
    models: _Key[ModelStore] = _Key("qw.models")  # result's .tflite files: kept in this session's folder, or a cache
    workdir: _Key[Path] = _Key("qw.workdir")  # this session's private folder for uploads (see `workdir`)
    params_applied: _Key[bool] = _Key("qw.params_applied")  # query parameters are applied once per session
    viewing: _Key[Publication] = _Key("qw.viewing")  # opened read-only from a ?view= link
    receipt: _Key[tuple[str, Receipt]] = _Key("qw.receipt")  # (result request key, receipt) of the last publish
    saved: _Key[str] = _Key("qw.saved")  # private id of the current result in the store (?r= in the address)
    restored: _Key[Publication] = _Key("qw.restored")  # a reload brought back an upload's result (its files are gone)
    details: _Key[bool] = _Key("qw.details")  # False once Compare drew its top alone (first paint), True once all
    # (result request key, objective, steps, [the result] once finished): the Layers page's last search
    tune: _Key[tuple[str, Objective, list[Step], list[TuneResult]]] = _Key("qw.tune")
    evaluation: _Key[tuple[str, DatasetEvaluation]] = _Key("qw.evaluation")  # (result request key, Full dataset's)
    sweep: _Key[Recipe] = _Key("qw.sweep")  # the recipe whose calibration sweep the Layers page shows
    truth_dropped: _Key[str] = _Key("qw.truth_dropped")  # why a new reading removed the ground truth (said once)
    floor: _KeyWithDefault[Floor] = _KeyWithDefault("qw.floor", Floor)  # chosen on Compare: the verdict's, the report's


session = Session()


def current_settings(*, latest_run: bool = False) -> Settings:
    """Which settings are current, for every page that shows a result: those it was run with, else the session's.

    Args:
        latest_run: the latest run's settings first, working or failed (Compare's What if… controls show the
            latest request: a failed what-if stays the choice shown, not tried again at every click).
    """
    if latest_run and session.run is not None:
        return session.run.settings
    return session.result_settings or session.settings


def current_reading() -> Reading:
    """The session's reading of the model's outputs; the inferred one outside a script run (ui.prewarm, bench)."""
    return session.reading if get_script_run_ctx(suppress_warning=True) is not None else Reading()


def workdir() -> Path:
    """This session's private folder, created on first use (see ui.sessions for its removal)."""
    path = session.workdir
    if path is None or not Path(path).is_dir():
        path = session.workdir = sessions.new_session_dir(sessions.current_session_id())
    os.utime(path)  # activity keeps the folder from expiring
    return Path(path)


@contextmanager
def upload_folder() -> Iterator[Path]:
    """A new folder for an upload, beside the inputs in use (which stay until it is accepted: `use_inputs`).

    Removed again when the block raises: refused files leave nothing behind.
    """
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=workdir()))
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def use_inputs(inputs: Inputs) -> None:
    """Makes `inputs` the session's, inferred preprocessing and reading; the previous upload's folder is removed.

    What named the previous model's layers ends with it (`forget_model_choices`). Callers
    forget the result of the previous inputs (`ui.run.reset`).
    """
    previous = session.inputs
    session.inputs = inputs
    session.override = PreprocessingOverride()
    session.reading = Reading()  # it names the previous model's outputs
    if previous is None or previous.digest != inputs.digest:
        forget_model_choices()
    if previous is not None and previous.folder is not None and previous.folder != inputs.folder:
        shutil.rmtree(previous.folder, ignore_errors=True)


def forget_model_choices() -> None:
    """Drops the choices tied to one model: its float-layer variants, the Layers page's search and calibration sweep.

    Kept, they would name layers another model has not (a backend told to keep a layer it
    cannot find builds the mode without it) or show another model's search as this one's.
    """
    if session.settings.float_layers:
        session.settings = session.settings.without_float_layers()
    session.tune = None
    session.sweep = None
