"""The Full dataset page's parts: the server's datasets, the run with its progress, and the scores."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from quant_core import CompareResult, QuantError, load_images
from quant_core.cache import cache_key
from quant_core.config import config
from quant_core.inputs.datasets import ClassFit, class_fit, decode_entries, open_dataset
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
    side: int | None = None  # px: the median shorter side of its first few images (None: none could be read)


SIDE_SAMPLE = 5  # images read per dataset for its typical size


@dataclass(frozen=True)
class Likeness:
    """How a set of any images resembles a comparison's images, for a model that is not a classifier."""

    shared: int  # the comparison's images the set holds (the same file name and the same decoded pixels)
    compared: int  # the comparison's images
    side: int | None  # the set's typical shorter side, px
    input_side: int  # the model input's shorter side, px

    @property
    def small(self) -> bool:
        """Its images are under half the model's input: every one would be blown up (digits for a segmenter)."""
        return self.side is not None and self.side * 2 < self.input_side

    @property
    def rank(self) -> tuple[int, bool]:
        """Sorts the likeliest set first: holding the compared images, then not too small (ties: name order)."""
        return -self.shared, self.small

    @property
    def summary(self) -> str:
        if self.shared:
            return f"holds {self.shared} of the {self.compared} images compared"
        if self.small:
            return f"images about {self.side} px, under half the model's {self.input_side} px input"
        return ""


Compared = tuple[tuple[str, str], ...]  # the compared images as (file name, digest of the decoded pixels)


def pixel_digest(pixels: np.ndarray) -> str:
    """What tells two decoded images apart: their shape and pixels (an image's bytes may differ, re-saved)."""
    return cache_key("pixels", list(pixels.shape), hashlib.sha256(np.ascontiguousarray(pixels).data).hexdigest())


@st.cache_data(show_spinner=False, max_entries=64)
def compared_images(paths: tuple[str, ...], folder: str | None, key: str) -> Compared:
    """The inputs' images by file name and pixel digest (`key`: the inputs' digest, for the cache)."""
    del key
    items = load_images([Path(p) for p in paths], work_dir=Path(folder) if folder else None).items
    return tuple(sorted((item.name.split("/")[-1], pixel_digest(item.pixels)) for item in items))


@st.cache_data(show_spinner="Looking for your images in the datasets…", max_entries=256, ttl=600)
def _shared(path: str, mtime: float, compared: Compared) -> int:
    """How many of the compared images the dataset holds: the same file name and the same pixels."""
    del mtime  # for the cache: a changed dataset is read again
    wanted = dict(compared)
    try:
        dataset = open_dataset([path])
    except QuantError:
        return 0
    names = [e.name.split("/")[-1] for e in dataset.entries]
    picked = [k for k, name in enumerate(names) if name in wanted]
    return len({names[k] for k, pixels in decode_entries(dataset, picked)
                if isinstance(pixels, np.ndarray) and pixel_digest(pixels) == wanted[names[k]]})


def likeness(dataset: ServerDataset, result: CompareResult, compared: Compared) -> Likeness:
    """How `dataset` resembles the images `result` was compared on (`compared`: them by name and pixels)."""
    shared = _shared(dataset.path, Path(dataset.path).stat().st_mtime, compared) if compared else 0
    return Likeness(shared, len(result.images), dataset.side,
                    min(result.preprocessing.height, result.preprocessing.width))


@dataclass(frozen=True)
class Offer:
    """A server dataset, and how its class folders fit the compared model's classes (a classifier) or how its
    images resemble the compared ones (another task)."""

    dataset: ServerDataset
    fit: ClassFit | None
    like: Likeness | None = None

    @property
    def label(self) -> str:
        said = self.fit.summary if self.fit is not None else self.like.summary if self.like is not None else ""
        return f"{Path(self.dataset.path).name} ({self.dataset.images:,} images{', ' + said if said else ''})"

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


def offers(result: CompareResult, compared: Compared = ()) -> tuple[Offer, ...]:
    """The server's datasets for the result's model. A classifier's: those whose class folders map onto its classes
    first, most folders named after its classes first (the first is preselected); sets that cannot be scored last.
    Another task's: any images will do (class folders are not read), so the sets holding the compared images
    (`compared`: by name and pixels) come first, most first; sets of images under half the model's input last;
    otherwise name order."""
    if result.task is not Task.CLASSIFICATION:
        liked = [(likeness(d, result, compared), d) for d in server_datasets()]
        return tuple(Offer(d, None, like) for like, d in sorted(liked, key=lambda pair: pair[0].rank))  # stable
    listed = [Offer(d, class_fit(d.classes, num_classes=len(result.class_names), class_names=result.class_names))
              for d in server_datasets()]
    return tuple(sorted(listed, key=lambda offer: offer.fit.rank if offer.fit else (0, 0, 0)))  # stable sort


def measure(result: CompareResult) -> str:
    """What the comparison's agreement with float32 measures, in a few words: 'agreement', 'mask IoU', 'PCK@5%'…"""
    return AGREEMENT[result.task][0]


@st.cache_data(show_spinner="Listing the datasets…", max_entries=256, ttl=600)
def _listing(path: str, mtime: float) -> ServerDataset | None:
    """How many images a dataset has and its class folders (listed), and the size of its first few (read); None
    when it holds none."""
    try:
        dataset = open_dataset([path])
    except QuantError:
        return None
    sides = [min(pixels.shape[:2]) for _, pixels in decode_entries(dataset, range(min(SIDE_SAMPLE, len(dataset))))
             if isinstance(pixels, np.ndarray)]
    return ServerDataset(path, len(dataset), dataset.labelled, dataset.classes,
                         int(np.median(sides)) if sides else None)


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
    if evaluation.stopped_because:  # the cluster went away: one line, and the shards done are below
        st.error(f"Stopped: {evaluation.stopped_because}. These numbers cover the {evaluation.evaluated:,} images "
                 f"scored before it stopped, of {len(evaluation.images):,}.", icon=":material/cloud_off:")
    elif evaluation.cancelled:
        st.warning(f"Stopped early: these numbers cover the {evaluation.evaluated:,} images scored before it stopped, "
                   f"of {len(evaluation.images):,}.", icon=":material/stop_circle:")
    for incident in evaluation.incidents:  # overcome: every image was still scored once
        st.info(f"{incident}. Every image was still scored once.", icon=":material/sync_problem:")
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
