"""The server's publication store and the thumbnails kept in it: what `published` and `resume` share."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from quant_core.store.publications import PublicationStore
from ui import engine

_DEFAULT_FOLDER = Path.home() / ".local" / "share" / "quant-workbench" / "publications"


@st.cache_resource(show_spinner=False)
def store() -> PublicationStore:
    """The server's publication store (QW_STORE_DIR, QW_DATABASE_URL, QW_PUBLISH_DAYS, QW_PUBLISH_MAX_MB)."""
    return PublicationStore.from_env(_DEFAULT_FOLDER)


def png_bytes(thumb: np.ndarray | bytes) -> bytes:
    """A thumbnail as PNG bytes, from RGB pixels or PNG bytes already (a stored comparison's)."""
    if isinstance(thumb, bytes):
        return thumb
    buf = io.BytesIO()
    Image.fromarray(np.asarray(thumb, dtype=np.uint8)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


@st.cache_data(show_spinner=False, max_entries=16)
def png_thumbnails(paths: tuple[str, ...], key: str) -> dict[str, bytes]:
    """Every input image's thumbnail as PNG bytes, encoded once per set of inputs (a what-if keeps its images)."""
    return {name: png_bytes(pixels) for name, pixels in engine.thumbnails(paths, key).items()}
