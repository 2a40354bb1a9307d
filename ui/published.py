"""Publishing a comparison and opening a published one read-only (?view=<id>), on the server's store."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from quant_core import CompareResult, ModelStore
from quant_core.store.publications import (NotFoundError, Publication, PublishedModels, Receipt, model_name,
                                           thumbnail_name)
from ui import run, state
from ui.inputs import Inputs
from ui.store import png_bytes, store
from ui.widgets import ENGINE_ERRORS, show_error

log = logging.getLogger(__name__)
VIEW = "view"  # query parameter: a published comparison's id
DELETE = "delete"  # query parameter: its private delete token (the owner's second link)


@dataclass(frozen=True)
class Choices:
    """What the owner adds to a publication beyond the result and its thumbnails."""

    models: bool = False  # every built variant's .tflite
    source: bool = False  # the uploaded model file
    anonymise: bool = False  # image file names replaced by image_001...


def publish(result: CompareResult, thumbs: Mapping[str, np.ndarray | bytes], models: ModelStore | None,
            source: Path | None, choices: Choices) -> Receipt:
    """Stores the comparison with its thumbnails (and, as chosen, its models and the source model).

    Raises:
        StoreFullError, InputError, MissingModelError: shown by the caller in one line.
    """
    files = {thumbnail_name(k): png_bytes(thumbs[image.file]) for k, image in enumerate(result.images)
             if image.file in thumbs}
    if choices.models and models is not None:
        files |= {model_name(v.tflite_sha256): models.model_bytes(v.tflite_sha256)
                  for v in result.variants if v.ok and v.tflite_sha256}
    if choices.source and source is not None and source.is_file():
        files[f"source/model{source.suffix.lower()}"] = source.read_bytes()
    return store().publish(result, files, anonymise=choices.anonymise)


def viewing() -> Publication | None:
    """The published comparison this session was opened on (?view=<id>), or None; a bad link stops with an error."""
    view = st.query_params.get(VIEW)
    cached = state.session.viewing
    if not view and cached is not None:  # a page change drops the query string: the address keeps the link
        st.query_params[VIEW] = cached.id
        return cached
    if not view:
        return None
    if cached is not None and cached.id == view:
        return cached
    try:
        publication = store().open(view)
    except NotFoundError as err:
        st.error(str(err), icon=":material/link_off:")
        st.stop()
    except (SQLAlchemyError, OSError) as err:
        st.error(_unavailable(err), icon=":material/cloud_off:")
        st.stop()
    state.session.viewing = publication
    return publication


def thumbnails(publication: Publication) -> dict[str, bytes]:
    """The publication's thumbnails (PNG bytes) by image file name, as the per-image grid looks them up."""
    return _thumbnails(publication.id, tuple(image.file for image in publication.result.images),
                       frozenset(publication.files))


@st.cache_data(show_spinner=False, max_entries=32, ttl=3600)
def _thumbnails(publication_id: str, files: tuple[str, ...], names: frozenset[str]) -> dict[str, bytes]:
    """Read once per publication, not at every rerun (its blobs never change; a deleted one no longer opens)."""
    return {file: store().blob(publication_id, thumbnail_name(k)) for k, file in enumerate(files)
            if thumbnail_name(k) in names}


def models(publication: Publication) -> ModelStore | None:
    """The published .tflite files as a model store, or None when the owner did not include them."""
    return PublishedModels(store(), publication.id) if any(f.startswith("models/") for f in publication.files) \
        else None


def _unavailable(err: Exception) -> str:
    """One line for a store that cannot be reached or written (database down, disk full)."""
    log.warning("publication store error: %s", err)
    return f"The publication store is unavailable right now ({type(err).__name__}); try again later."


def source_file(publication: Publication) -> tuple[str, bytes] | None:
    """The original model the owner published with the comparison, as (file name, bytes), if any."""
    name = next((f for f in publication.files if f.startswith("source/")), None)
    if name is None:
        return None
    return f"{publication.model_name}{Path(name).suffix}", store().blob(publication.id, name)


def root_url() -> str:
    """This server's address with no page or query: 'http://host:8501/'."""
    parts = urlsplit(st.context.url or "")
    return f"{parts.scheme}://{parts.netloc}/" if parts.netloc else "/"


def is_viewing() -> bool:
    """True when this session shows a published comparison (from its link, or since it opened one)."""
    return bool(st.query_params.get(VIEW)) or state.session.viewing is not None


def links(receipt: Receipt) -> tuple[str, str]:
    """The share link (opens Compare) and the owner's private delete link (opens Report, with its button)."""
    root = root_url()
    return f"{root}?{VIEW}={receipt.id}", f"{root}report?{VIEW}={receipt.id}&{DELETE}={receipt.delete_token}"


def result_shown() -> tuple[CompareResult, Publication | None]:
    """The comparison a page shows: the published one (said so above it), else this session's (or a stop)."""
    publication = viewing()
    if publication is not None:
        st.info(f"A published comparison, read-only: {publication.summary}.", icon=":material/public:")
        return publication.result, publication
    return run.need_result(), None


def publish_form(result: CompareResult, thumbs: Mapping[str, np.ndarray | bytes], models: ModelStore | None,
                 inputs: Inputs) -> None:
    """The owner's Publish form, then the share link and the private delete link of what this session published."""
    days = store().retention.days
    st.caption(f"Stores this comparison on the server and gives a link that opens it read-only, at once, for anyone "
               f"who has it: Compare, Ops and this page, with the thumbnails. It expires after {days} days; a "
               "second, private link deletes it. Nothing else from your session is published.")
    with st.form("publish"):
        include_models = st.checkbox("Include every variant's .tflite file", key="w.pub_models",
                                     help="Readers can then download the models; without them, only the numbers.")
        include_source = st.checkbox("Include the uploaded model file", key="w.pub_source",
                                     disabled=inputs.sample is not None,
                                     help="Off for bundled samples (they ship with the workbench).")
        anonymise = st.checkbox("Hide image file names (image_001, image_002, ...)", key="w.pub_anon",
                                help="Class labels stay: they are what the comparison is about.")
        submitted = st.form_submit_button("Publish", type="primary", icon=":material/public:")
    if submitted:
        try:
            receipt = publish(result, thumbs, models,
                              inputs.model if inputs.sample is None else None,
                              Choices(models=include_models, source=include_source, anonymise=anonymise))
        except ENGINE_ERRORS as err:
            show_error(err)
            return
        except (SQLAlchemyError, OSError) as err:
            st.error(_unavailable(err), icon=":material/cloud_off:")
            return
        state.session.receipt = (result.request_key, receipt)
    entry = state.session.receipt
    if entry is None or entry[0] != result.request_key:
        return
    share_link, delete_link = links(entry[1])
    st.success(f"Published until {entry[1].expires_at:%Y-%m-%d}. Anyone with this link sees it read-only:",
               icon=":material/public:")
    st.code(share_link, language=None)
    st.warning("Your private link to delete it: keep it to yourself (it is shown only in this session).",
               icon=":material/key:")
    st.code(delete_link, language=None)


def delete_form(publication: Publication) -> None:
    """With the owner's private link (?delete=<token>): a button that deletes the publication."""
    token = st.query_params.get(DELETE)
    if not token:
        return
    st.subheader("Delete this publication")
    st.caption("You opened the owner's private link. Deleting removes the comparison and its files from the server; "
               "the share link then says it no longer exists.")
    if not st.button("Delete it now", type="primary", icon=":material/delete:"):
        return
    try:
        store().delete(publication.id, token)
    except NotFoundError as err:
        st.error(str(err), icon=":material/link_off:")
        return
    state.session.viewing = None
    st.success("Deleted.", icon=":material/check:")
    st.stop()
