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
from quant_core.outputs import AGREEMENT
from quant_core.results.compare_result import VariantResult
from quant_core.results.dataset_compare import MEAN_COSINE, DatasetEvaluation, VariantScore, accuracy_doubt
from quant_core.tasks import Task, main_output
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
    """A server dataset, and how its class folders fit the compared model's classes (None: not a classifier)."""

    dataset: ServerDataset
    fit: ClassFit | None

    @property
    def label(self) -> str:
        if self.fit is None:  # any folder of images: its class folders are not read
            return f"{Path(self.dataset.path).name} ({self.dataset.images:,} images)"
        return f"{Path(self.dataset.path).name} ({self.dataset.images:,} images, {self.fit.summary})"

    @property
    def refusal(self) -> str | None:
        """One line on why this set cannot be scored against the model, or None."""
        if self.fit is None or self.fit.refusal is None:
            return None
        return f"{Path(self.dataset.path).name}: {self.fit.refusal}."


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
    """The server's datasets for the result's model. A classifier's: those whose class folders map onto its classes
    first, most folders named after its classes first (the first is preselected); sets that cannot be scored last.
    Another task's: every set, in name order (any images will do; class folders are not read)."""
    if result.task is not Task.CLASSIFICATION:
        return tuple(Offer(d, None) for d in server_datasets())
    listed = [Offer(d, class_fit(d.classes, num_classes=len(result.class_names), class_names=result.class_names))
              for d in server_datasets()]
    return tuple(sorted(listed, key=lambda offer: offer.fit.rank if offer.fit else (0, 0, 0)))  # stable sort


def measure(result: CompareResult) -> str:
    """What the comparison's agreement with float32 measures, in a few words: 'agreement', 'mask IoU', 'PCK@5%'…"""
    return AGREEMENT[result.task][0]


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
    scores = {s.tflite_sha256: s for s in evaluation.variants}
    pairs = [(v, scores[v.tflite_sha256]) for v in result.variants if v.ok and v.tflite_sha256 in scores]
    if evaluation.task is not Task.CLASSIFICATION:
        return pd.DataFrame([_task_row(result, evaluation, variant, score) for variant, score in pairs])
    reference = evaluation.variants[0]
    rows = []
    for variant, score in pairs:
        row = {"variant": variant.name, "agreement": _pct(score.top1_agreement),
               f"agreement on {len(result.images)}": _pct(variant.top1_agreement)}
        if result.has_top5:  # with five classes or fewer, every top 5 holds them all
            row["top-5 agreement"] = _pct(score.top5_agreement)
        if score.accuracy is not None and reference.accuracy is not None:
            row |= {"accuracy": _pct(score.accuracy), f"accuracy on {len(result.images)}": _pct(variant.accuracy),
                    "Δ vs float32": f"{100 * (score.accuracy - reference.accuracy):+.2f} pts"}
            if result.has_top5:
                row["top-5 accuracy"] = _pct(score.top5_accuracy)
        row |= {"mean |Δp|": _number(score.mean_abs_diff, ".4f"), "KL": _number(score.kl_divergence, ".2e")}
        rows.append(row)
    return pd.DataFrame(rows)


def _task_row(result: CompareResult, evaluation: DatasetEvaluation, variant: VariantResult,
              score: VariantScore) -> dict[str, str]:
    """A non-classifier's row: its task's agreement on the set and on the sample, and each output's SQNR on the set."""
    title = evaluation.measure
    row = {"variant": variant.name, title: _pct(score.top1_agreement),
           f"{title} on {len(result.images)}": _pct(_on_sample(result, variant, title))}
    for found in score.outputs:
        whole = found.whole
        sqnr = "exact" if whole.exact else ("–" if whole.sqnr_db is None else f"{whole.sqnr_db:.1f} dB")
        row[f"{found.name} SQNR"] = sqnr
    return row


def _on_sample(result: CompareResult, variant: VariantResult, title: str) -> float | None:
    """The sample's figure for what the set's column measures (an embedding's mean cosine where the set's is that)."""
    main = main_output(result.output_specs)
    if title != MEAN_COSINE or main is None or main.index >= len(variant.outputs):
        return variant.top1_agreement
    embedding = variant.outputs[main.index].embedding
    return None if embedding is None else embedding.mean_cosine


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
    scored = (f"labels: {evaluation.labels_source}" if evaluation.task is Task.CLASSIFICATION else
              f"the model is not a classifier: each variant's {evaluation.measure} with float32 is measured on every "
              "image, and each output's SQNR (dB, higher is closer) over every value of every image")
    st.caption(f"Ran on {evaluation.executor} in {evaluation.shards} shards; {scored}. "
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
    what = "predictions" if evaluation.task is Task.CLASSIFICATION else evaluation.measure
    st.download_button(f"Scores and per-image {what} (JSON)", json.dumps(evaluation.to_dict()),
                       f"{Path(evaluation.dataset).name}_evaluation.json", "application/json", on_click="ignore",
                       icon=":material/download:")


def _pct(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:.2%}"


def _number(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)
