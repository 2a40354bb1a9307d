"""What a comparison is asked to do: options, the serializable request, and progress reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from quant_core.errors import InputError
from quant_core.inputs.preprocess import PreprocessingOverride
from quant_core.modes import Mode
from quant_core.recipe import Recipe
from quant_core.results.compare_result import CompareResult
from quant_core.tasks import Role, Task


@dataclass(frozen=True)
class Progress:
    """A progress report: `fraction` of the whole request done, and what is happening.

    `partial` is the comparison so far, sent each time a variant's numbers are known: every
    variant measured until now (latency None while it is still to be timed), so a page can
    show rows as they come.
    """

    fraction: float
    message: str
    variant: str | None = None
    partial: CompareResult | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class CompareOptions:
    """Everything besides the files that determines a comparison.

    Attributes:
        recipes: variants to build; a float32 baseline is added first if missing.
        threads: interpreter threads for latency and evaluation.
        top_k: classes kept per image and variant.
        preprocessing: choices that replace the inferred preprocessing.
        measure_latency: False skips timing (tests, quick looks).
        task: what the model does, when the inferred task is wrong (None: inferred, quant_core.tasks).
        roles: (output name or index, role) for outputs whose inferred role is wrong.
        truth: ground truth of a segmentation or landmark model's main output: PNG masks named like
            the images (files or folders), or one JSON file of points (quant_core.inputs.ground_truth);
            a detector's true boxes: one COCO .json file, or YOLO .txt files named like the images.
        device_kernels: also measure each variant on the kernels other targets run: LiteRT's builtin
            kernels without XNNPACK, and TFLite Micro for integer-only variants (quant_core.kernels).
        decoder: how a detector's outputs become boxes, when the inferred decoder is wrong or none
            could be inferred ("ssd:<preset>", "ssd:custom key=value ...", "yolo", "postprocess"; quant_core.boxes).
    """

    recipes: tuple[Recipe, ...] = tuple(Recipe(m) for m in Mode)
    threads: int = 1
    top_k: int = 5
    preprocessing: PreprocessingOverride = field(default_factory=PreprocessingOverride)
    measure_latency: bool = True
    task: Task | None = None
    roles: tuple[tuple[str, Role], ...] = ()
    truth: tuple[str, ...] = ()
    decoder: str = ""
    device_kernels: bool = True  # also run each variant on the builtin kernels without XNNPACK, and TFLite Micro

    def __post_init__(self) -> None:
        if not self.recipes:
            raise InputError("no variants requested; choose at least one mode")
        if not 1 <= self.threads <= 64:
            raise InputError(f"threads must be from 1 to 64, got {self.threads}")
        if not 1 <= self.top_k <= 20:
            raise InputError(f"top-k must be from 1 to 20, got {self.top_k}")
        if not any(r.mode is Mode.FLOAT32 for r in self.recipes):
            object.__setattr__(self, "recipes", (Recipe(Mode.FLOAT32), *self.recipes))


@dataclass(frozen=True)
class CompareRequest:
    """A serializable request: file paths plus options (can run in another process)."""

    model: str
    images: tuple[str, ...]
    labels_file: str | None = None
    options: CompareOptions = field(default_factory=CompareOptions)
