"""Reload-safe sessions: the session's current result is kept in the store under a private id in the address (?r=).

A reload or a reopened tab is a new Streamlit session; with `?r=<id>` it gets the result
back (with the options it was run with, and the bundled sample it was run on, so what-ifs go
on). An uploaded model's files are not kept: its result comes back to read and download,
and changing options asks for the files again. The same retention rules as publications
apply; a session's record is never listed anywhere and its id is its only key.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qsl

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from quant_core import CompareResult, PreprocessingOverride, QuantError
from quant_core.store.publications import Kind, NotFoundError, thumbnail_name
from ui import engine, state
from ui.inputs import Inputs, sample_inputs, samples
from ui.settings import Settings
from ui.share import override_from_query, reading_from_query, share_query
from ui.store import png_thumbnails, store

RESUME = "r"  # query parameter: the private id of the session's current result
log = logging.getLogger(__name__)
_CONTEXT = "session/context.json"  # blob: the options and the bundled sample the result was made with


def save(result: CompareResult, settings: Settings, inputs: Inputs, override: PreprocessingOverride) -> None:
    """Keeps a new result under a fresh private id (the previous one is deleted) and puts the id in the address.

    A store that cannot take it (full, unwritable) costs only the reload-safety: logged, not shown.
    """
    query = share_query(inputs.sample or "", settings, override, state.session.reading, by_place=False)
    context = {"sample": inputs.sample, "query": dict(parse_qsl(query[1:]))}
    thumbs = png_thumbnails(tuple(str(p) for p in inputs.images), engine.inputs_key(inputs))
    files = {thumbnail_name(k): thumbs[image.file] for k, image in enumerate(result.images) if image.file in thumbs}
    files[_CONTEXT] = json.dumps(context).encode()
    publications = store()
    try:
        receipt = publications.publish(result, files, kind=Kind.SESSION)
        previous = state.session.saved
        if previous is not None:
            publications.delete(previous, kind=Kind.SESSION)
    except NotFoundError:  # the previous one expired meanwhile
        pass
    except (QuantError, OSError, SQLAlchemyError) as err:
        log.warning("the result is not kept for a reload: %s", err)
        return
    state.session.saved = receipt.id
    st.query_params[RESUME] = receipt.id


def keep_in_address() -> None:
    """Puts the saved id back in the address when a page change dropped the query string."""
    saved = state.session.saved
    if saved is not None and st.query_params.get(RESUME) != saved:
        st.query_params[RESUME] = saved


def restore() -> None:
    """A new session opened with ?r=<id>: brings that result (and its options and sample) back, once."""
    wanted = st.query_params.get(RESUME)
    if not wanted or state.session.saved == wanted or state.session.result is not None:
        return
    publications = store()
    try:
        record = publications.open(wanted, kind=Kind.SESSION)
        context = json.loads(publications.blob(wanted, _CONTEXT))
    except NotFoundError:
        del st.query_params[RESUME]
        st.toast("That result is no longer kept (it expired or was replaced): run the comparison again.")
        return
    settings = Settings.from_query(context["query"])
    if context.get("sample") in {s.name for s in samples()}:
        state.session.inputs = sample_inputs(context["sample"])
        state.session.override = override_from_query(context["query"]) or PreprocessingOverride()
        state.session.reading = reading_from_query(context["query"])
    else:
        state.session.restored = record  # the uploaded files are gone: the result is there to read
    state.session.settings = settings
    state.session.result = record.result
    state.session.result_settings = settings
    state.session.models = engine.artifact_cache()  # models by content key, while the cache keeps them
    state.session.saved = wanted
