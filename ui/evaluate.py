"""The Full dataset page's parts: the server's datasets, the run with its progress, and the scores."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from quant_core import CompareResult, QuantError
from quant_core.config import config
from quant_core.inputs.datasets import ClassFit, class_fit, open_dataset
from quant_core.results.dataset_compare import DatasetEvaluation, accuracy_doubt
from quant_core.serving.dataset_evaluation import EvaluationProgress
from quant_core.serving.protocol import ExecutorChoice
from ui import engine, state
from ui.inputs import SAMPLES_DIR
from ui.settings import Settings
from ui.widgets import ENGINE_ERRORS, current_inputs, show_error

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


@dataclass(frozen=True)
class ServerDataset:
    """A dataset the operator put on the server: a folder of class folders, or an archive."""

    path: str
    images: int
    labelled: bool
    classes: tuple[str, ...] = ()  # its class folders' names


@dataclass(frozen=True)
class Offer:
    """A server dataset, and how its class folders fit the compared model's classes."""

    dataset: ServerDataset
    fit: ClassFit

    @property
    def label(self) -> str:
        return f"{Path(self.dataset.path).name} ({self.dataset.images:,} images, {self.fit.summary})"

    @property
    def refusal(self) -> str | None:
        """One line on why this set cannot be scored against the model, or None."""
        return None if self.fit.refusal is None else f"{Path(self.dataset.path).name}: {self.fit.refusal}."


def datasets_dir() -> Path | None:
    """$QW_DATASETS_DIR, where an operator puts datasets; None: the bundled samples' photos are offered."""
    return config().datasets_dir


def server_datasets() -> tuple[ServerDataset, ...]:
    """Every folder and archive directly under $QW_DATASETS_DIR (else the bundled photo folders), with its size."""
    root = datasets_dir()
    if root is None:
        candidates = sorted(p for p in SAMPLES_DIR.glob("*_images") if p.is_dir())
    elif root.is_dir():
        candidates = sorted(p for p in root.iterdir() if not p.name.startswith(".")
                            and (p.is_dir() or p.name.lower().endswith(ARCHIVE_SUFFIXES)))
    else:
        return ()
    listed = (_listing(str(p), p.stat().st_mtime) for p in candidates)
    return tuple(d for d in listed if d is not None)


def offers(result: CompareResult) -> tuple[Offer, ...]:
    """The server's datasets for the result's model: those whose class folders map onto its classes first, most
    folders named after its classes first (the first is preselected); sets that cannot be scored last."""
    listed = [Offer(d, class_fit(d.classes, num_classes=len(result.class_names), class_names=result.class_names))
              for d in server_datasets()]
    return tuple(sorted(listed, key=lambda offer: offer.fit.rank))  # stable: ties keep the listing's name order


@st.cache_data(show_spinner="Listing the datasets…", max_entries=256, ttl=600)
def _listing(path: str, mtime: float) -> ServerDataset | None:
    """How many images a dataset has and its class folders (listed, not read); None when it holds none."""
    try:
        dataset = open_dataset([path])
    except QuantError:
        return None
    return ServerDataset(path, len(dataset), dataset.labelled, dataset.classes)


def executor_config() -> ExecutorChoice:
    """Where evaluations run, as this server is configured: QW_EXECUTOR and QW_RAY_ADDRESS."""
    return ExecutorChoice(config().executor, config().ray_address)


def executor_label() -> str:
    """Where evaluations run, in words."""
    choice = executor_config()
    if (choice.kind or "local") != "ray":
        return "this server's worker, one shard after another (QW_EXECUTOR=local)"
    address = choice.address
    return f"the Ray cluster at {address}" if address else "a local Ray on this server's CPUs (QW_EXECUTOR=ray)"


def run(result: CompareResult, settings: Settings, dataset: ServerDataset, variants: tuple[str, ...]) -> None:
    """Evaluates with a progress bar and a Stop button; the outcome is kept in `state.session.evaluation`."""
    stop = st.empty()  # shown while the evaluation runs; its click ends this run (see `stopped`)
    stop.button("Stop", icon=":material/stop_circle:", key="w.evaluate_stop",
                help="Stops when the shard being scored ends (seconds), and the cluster's work with it.")
    bar = st.progress(0.0, text=f"Starting: {dataset.images:,} images, {len(variants)} variants…")

    def on_progress(p: EvaluationProgress) -> None:
        bar.progress(min(1.0, p.done / max(p.total, 1)), text=p.message)

    try:
        evaluation = engine.evaluate_dataset(current_inputs(), state.session.override, settings,
                                     result, variants, dataset.path, executor=executor_config(),
                                     on_progress=on_progress)
    except ENGINE_ERRORS as err:
        stop.empty()
        bar.empty()
        show_error(err)
        return
    stop.empty()
    bar.empty()
    state.session.evaluation = (result.request_key, evaluation)


def stopped() -> bool:
    """True in the run that the Stop button started (the evaluation it interrupted is gone)."""
    return bool(st.session_state.get("w.evaluate_stop"))


def scores_table(result: CompareResult, evaluation: DatasetEvaluation) -> pd.DataFrame:
    """Per variant: the whole dataset's numbers beside the comparison's (its sample), and the loss against float32."""
    by_sha = {v.tflite_sha256: v for v in result.variants if v.ok}
    reference = evaluation.variants[0]
    rows = []
    for variant in result.variants:
        score = next((s for s in evaluation.variants if s.tflite_sha256 == variant.tflite_sha256), None)
        if score is None or variant.tflite_sha256 not in by_sha:
            continue
        row = {"variant": variant.name, "agreement": _pct(score.top1_agreement),
               f"agreement on {len(result.images)}": _pct(variant.top1_agreement)}
        if result.has_top5:  # with five classes or fewer, every top 5 holds them all
            row["top-5 agreement"] = _pct(score.top5_agreement)
        if score.accuracy is not None and reference.accuracy is not None:
            row |= {"accuracy": _pct(score.accuracy), f"accuracy on {len(result.images)}": _pct(variant.accuracy),
                    "Δ vs float32": f"{100 * (score.accuracy - reference.accuracy):+.2f} pts"}
            if result.has_top5:
                row["top-5 accuracy"] = _pct(score.top5_accuracy)
        row |= {"mean |Δp|": f"{score.mean_abs_diff:.4f}", "KL": f"{score.kl_divergence:.2e}"}
        rows.append(row)
    return pd.DataFrame(rows)


def render(result: CompareResult, evaluation: DatasetEvaluation) -> None:
    """The outcome: how the work ran, the scores, the skipped files and the JSON download."""
    st.subheader(f"On {Path(evaluation.dataset).name}", anchor=False)
    if evaluation.cancelled:
        st.warning(f"Stopped early: these numbers cover the {evaluation.evaluated:,} images scored before it stopped, "
                   f"of {len(evaluation.images):,}.", icon=":material/stop_circle:")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Images evaluated", f"{evaluation.evaluated:,}", help=f"of {len(evaluation.images):,} listed")
    c2.metric("Skipped", f"{len(evaluation.skipped):,}")
    c3.metric("Throughput", f"{evaluation.images_per_second:,.0f} images/s",
              help=f"{len(evaluation.variants)} models per image, {evaluation.seconds:.1f} s in all")
    c4.metric("Workers", f"{len(evaluation.worker_names)}", help=evaluation.executor)
    st.caption(f"Ran on {evaluation.executor} in {evaluation.shards} shards; labels: {evaluation.labels_source}. "
               f"Columns \"on {len(result.images)}\" are the comparison's own images, for contrast: with "
               f"{len(result.images)} images one image moves a percentage by {100 / max(len(result.images), 1):.1f} "
               "points.")
    doubt = accuracy_doubt(result, evaluation)
    if doubt is not None:
        st.warning(doubt.message, icon=":material/warning:")
    st.dataframe(scores_table(result, evaluation), hide_index=True, width="stretch")
    if evaluation.skipped:
        with st.expander(f"{len(evaluation.skipped)} file(s) skipped"):
            st.dataframe(pd.DataFrame([{"file": s.name, "reason": s.reason} for s in evaluation.skipped]),
                         hide_index=True, width="stretch")
    st.download_button("Scores and per-image predictions (JSON)", json.dumps(evaluation.to_dict()),
                       f"{Path(evaluation.dataset).name}_evaluation.json", "application/json", on_click="ignore",
                       icon=":material/download:")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"
