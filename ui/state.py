"""Every session-state key in one place, with typed accessors.

Data that must survive page changes lives under these non-widget keys; widget keys are
prefixed `w.` and may be dropped by Streamlit when their page is not shown.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import streamlit as st

from ui import sessions

INPUTS = "qw.inputs"  # ui.inputs.Inputs: the model, images and labels in use
OVERRIDE = "qw.override"  # quant_core.PreprocessingOverride chosen on the Model & data page
SETTINGS = "qw.settings"  # ui.settings.Settings: the quantization choices
RESULT = "qw.result"  # quant_core.CompareResult of the last run
RESULT_SETTINGS = "qw.result_settings"  # ui.settings.Settings that RESULT was run with
RUN = "qw.run"  # ui.run.Run: the session's latest comparison run (working or ended)
MODELS = "qw.models"  # quant_core.KeptModels: RESULT's .tflite files, kept in this session's folder
WORKDIR = "qw.workdir"  # this session's private folder for uploads
UPLOAD_ERROR = "qw.upload_error"  # the last upload problem, shown until the next upload
PARAMS_APPLIED = "qw.params_applied"  # query parameters are applied once per session


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


def reset_workdir() -> Path:
    """Empties this session's folder (a new upload replaces the old one)."""
    path = get(WORKDIR)
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
        put(WORKDIR, None)
    return workdir()
