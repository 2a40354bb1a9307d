"""Every session-state key in one place, with typed accessors.

Data that must survive page changes lives under these non-widget keys; widget keys are
prefixed `w.` and may be dropped by Streamlit when their page is not shown.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st

from quant_core import PreprocessingOverride
from ui import sessions
from ui.inputs import Inputs

INPUTS = "qw.inputs"  # ui.inputs.Inputs: the model, images and labels in use
OVERRIDE = "qw.override"  # quant_core.PreprocessingOverride chosen on the Model & data page
SETTINGS = "qw.settings"  # ui.settings.Settings: the quantization choices
RESULT = "qw.result"  # quant_core.CompareResult of the last run
RESULT_SETTINGS = "qw.result_settings"  # ui.settings.Settings that RESULT was run with
RUN = "qw.run"  # ui.run.Run: the session's latest comparison run (working or ended)
MODELS = "qw.models"  # quant_core.KeptModels: RESULT's .tflite files, kept in this session's folder
WORKDIR = "qw.workdir"  # this session's private folder for uploads
PARAMS_APPLIED = "qw.params_applied"  # query parameters are applied once per session
VIEWING = "qw.viewing"  # quant_core.store.publications.Publication opened read-only from a ?view= link
RECEIPT = "qw.receipt"  # quant_core.store.publications.Receipt of this session's last publish (its links)
SAVED = "qw.saved"  # private id of this session's current result in the store (?r= in the address)
RESTORED = "qw.restored"  # quant_core.store.publications.Publication: a reload brought back an upload's result
DETAILS = "qw.details"  # False once Compare drew its top alone (first paint), True once it drew everything
TUNE = "qw.tune"  # (result request key, Objective, [Step], [True] once finished): the Layers page's last search
# (result request key, quant_core.results.dataset_compare.DatasetEvaluation): Full dataset's last
EVALUATION = "qw.evaluation"
SWEEP = "qw.sweep"  # quant_core.Recipe whose calibration sweep the Layers page shows
FLOOR = "qw.floor"  # quant_core.results.verdict.Floor chosen on Compare: the verdict and the HTML report use it


def get(key: str, default: Any = None) -> Any:
    """The value under a state key, or default."""
    return st.session_state.get(key, default)


def put(key: str, value: Any) -> None:
    """Stores a value under a state key."""
    st.session_state[key] = value


def workdir() -> Path:
    """This session's private folder, created on first use (see ui.sessions for its removal)."""
    path = get(WORKDIR)
    if path is None or not Path(path).is_dir():
        path = sessions.new_session_dir(sessions.current_session_id())
        put(WORKDIR, path)
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
    """Makes `inputs` the session's, with the inferred preprocessing; the previous upload's folder is removed.

    What named the previous model's layers ends with it (`forget_model_choices`). Callers
    forget the result of the previous inputs (`ui.run.reset`).
    """
    previous = get(INPUTS)
    put(INPUTS, inputs)
    put(OVERRIDE, PreprocessingOverride())
    if previous is None or previous.digest != inputs.digest:
        forget_model_choices()
    if previous is not None and previous.folder is not None and previous.folder != inputs.folder:
        shutil.rmtree(previous.folder, ignore_errors=True)


def forget_model_choices() -> None:
    """Drops the choices tied to one model: its float-layer variants, the Layers page's search and calibration sweep.

    Kept, they would name layers another model has not (an engine told to keep a layer it
    cannot find builds the mode without it) or show another model's search as this one's.
    """
    settings = get(SETTINGS)
    if settings is not None:
        put(SETTINGS, settings.without_float_layers())
    put(TUNE, None)
    put(SWEEP, None)
