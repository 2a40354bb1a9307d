"""Detection as a task: the decoder reading a detector's outputs, its boxes on the images, how close a variant's are.

A model whose main output holds boxes (`Role.BOXES`) gets a `Decoder`, inferred once from
its outputs' shapes and float32's values (`infer_decoder`) or chosen by the user
(`parse_decoder`): MediaPipe-style SSD heads (anchors from a named preset or custom values),
a YOLO-style single output, or the four outputs of TFLite_Detection_PostProcess. Every variant
is decoded with the same decoder (`decode`), down to a low score floor so that a score
threshold can be changed later without running a model; its detections are kept per image
(`ImageBoxes`) and summed against float32's (`BoxSummary`: precision, recall, F1, IoU, score
and keypoint errors), and against ground truth when given (mAP@0.5 and mAP@0.5:0.95).

`head_layers` names the ops that only move, join or squash values between a detector's last
computing layers and its output: the layers to keep in float when one output tensor mixes
box coordinates in pixels with probabilities (`shared_scale`).

Pure numpy (pycocotools for mAP); bad input is one `InputError` line.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from quant_core import detection as det
from quant_core.errors import InputError
from quant_core.inputs.images import ImageSet
from quant_core.inputs.preprocess import Preprocessing
from quant_core.tasks import OutputSpec, Role, postprocess_order

FLOOR = 0.1  # detections scoring at least this are kept: the lowest threshold a slider can choose
YOLO_THRESHOLD = 0.25  # ultralytics' default confidence
MAX_KEPT = 100  # detections kept per image at the floor (COCO scores at most 100)
SHARED_RATIO = 16.0  # box values spanning this many times the scores' range make int8 scores coarse


class DecoderKind(enum.StrEnum):
    """How a detector's raw outputs become boxes."""

    SSD = "ssd"  # regressors [1, A, K] + scores [1, A, C], anchors generated (MediaPipe)
    YOLO = "yolo"  # one output [1, 4+C, A] or [1, A, 4+C]
    POSTPROCESS = "postprocess"  # TFLite_Detection_PostProcess: boxes, classes, scores, count


@dataclass(frozen=True)
class Decoder:
    """How one detector's outputs are read, the same for float32 and every variant.

    Attributes:
        kind: the decoder.
        outputs: the outputs it reads, by index: SSD (regressors, scores); YOLO (output,);
            PostProcess (boxes, classes, scores, count).
        input_size: (width, height) of the model input the boxes are in.
        threshold: the score a detection needs in the headline figures (MediaPipe's graph
            config for its presets, ultralytics' 0.25 for YOLO); a slider may change it.
        ssd: the anchors, box coding and suppression of an SSD head.
        yolo: the layout, units and classes of a YOLO-style output.
        description: one line for people: what was read and why.
        set_by_user: chosen, not inferred.
    """

    kind: DecoderKind
    outputs: tuple[int, ...]
    input_size: tuple[int, int]
    threshold: float
    ssd: det.SsdConfig | None = None
    yolo: det.YoloFormat | None = None
    description: str = ""
    set_by_user: bool = False

    @property
    def keypoints(self) -> int:
        """Keypoints per detection (SSD heads only)."""
        return self.ssd.coding.num_keypoints if self.ssd is not None else 0

    @property
    def floor(self) -> float:
        """Detections are decoded down to this score (the lowest threshold to choose)."""
        return min(FLOOR, self.threshold)

    @property
    def choice(self) -> str:
        """The text `parse_decoder` reads back into this decoder's kind and preset."""
        if self.kind is DecoderKind.SSD and self.ssd is not None:
            return f"ssd:{self.ssd.name}"
        return self.kind.value


# ----------------------------------------------------------------------------------------------- choosing


def choices(specs: Sequence[OutputSpec]) -> tuple[str, ...]:
    """The decoders a person may choose for a model with these outputs (`parse_decoder` texts), likeliest first."""
    shapes = [s.shape for s in specs]
    found: list[str] = []
    try:
        regressors, _ = det.ssd_output_order(shapes)
        rows = shapes[regressors]
        found += [f"ssd:{p.value}" for p in det.matching_presets(num_anchors=rows[1], num_coords=rows[2])]
        found += [f"ssd:{p.value}" for p in det.matching_presets(num_anchors=rows[1]) if f"ssd:{p.value}" not in found]
    except InputError:
        pass
    if sum(len(s) == 3 and s[0] == 1 for s in shapes) == 1:
        found.append("yolo")
    if postprocess_order(shapes) is not None:
        found.append("postprocess")
    return tuple(dict.fromkeys(found))


def parse_decoder(text: str, specs: Sequence[OutputSpec], outputs: Sequence[np.ndarray], *,
                  input_hw: tuple[int, int]) -> Decoder:
    """The decoder a person named: "ssd:<preset>", "ssd:custom key=value ...", "yolo[:key=value ...]", "postprocess".

    Custom SSD values are MediaPipe's SsdAnchorsCalculator names (strides=8,16,16,16
    min_scale=0.1484375 max_scale=0.75 keypoints=6 ...), the rest as its face detector;
    YOLO takes classes=N, objectness=1, layout=channels_first|channels_last.

    Raises:
        InputError: an unknown decoder, or one the model's outputs do not fit.
    """
    head, _, rest = text.strip().partition(":")
    kind = head.strip().lower()
    if kind == DecoderKind.SSD:
        return _ssd(rest.strip(), specs, outputs, input_hw=input_hw, by_user=True)
    if kind == DecoderKind.YOLO:
        return _yolo(specs, outputs, input_hw=input_hw, options=_pairs(rest, "yolo"), by_user=True)
    if kind == DecoderKind.POSTPROCESS:
        return _postprocess(specs, outputs, input_hw=input_hw, by_user=True)
    raise InputError(f"decoder {text!r}: expected ssd:<preset>, ssd:custom key=value ..., yolo or postprocess; this "
                     f"model fits {', '.join(choices(specs)) or 'none of them'}")


def infer_decoder(specs: Sequence[OutputSpec], outputs: Sequence[np.ndarray], *,
                  input_hw: tuple[int, int]) -> Decoder | None:
    """The decoder a detector's outputs make unambiguous; None when they do not (the user chooses).

    Two outputs [1, A, K >= 4] and [1, A, 1..C] whose A is one preset's anchor count: that
    SSD preset. One [1, X, Y] boxes output: YOLO, layout and units read from float32's values.
    Four outputs shaped as TFLite_Detection_PostProcess's: that op's.
    """
    boxes = [s for s in specs if s.role is Role.BOXES]
    if not boxes:
        return None
    shapes = [s.shape for s in specs]
    if postprocess_order(shapes) is not None:
        return _postprocess(specs, outputs, input_hw=input_hw, by_user=False)
    scores = [s for s in specs if s.role is Role.BOX_SCORES]
    if scores:
        rows = boxes[0].shape
        presets = det.matching_presets(num_anchors=rows[1], num_coords=rows[2])
        if len(presets) != 1:
            return None
        try:
            return _ssd(presets[0].value, specs, outputs, input_hw=input_hw, by_user=False)
        except InputError:  # the preset's anchors, but not its input size: the user chooses
            return None
    try:
        return _yolo(specs, outputs, input_hw=input_hw, options={}, by_user=False)
    except InputError:
        return None


def _pairs(text: str, what: str) -> dict[str, str]:
    """key=value words separated by spaces (or semicolons): a value may hold commas (strides=8,16,16,16)."""
    found = {}
    for word in text.replace(";", " ").split():
        key, sep, value = word.partition("=")
        if not sep or not key or not value:
            raise InputError(f"{what}: {word!r}; expected key=value")
        found[key.strip().lower()] = value.strip()
    return found


def _number(options: dict[str, str], key: str, default: float, what: str) -> float:
    given = options.pop(key, str(default))
    try:
        value = float(given)
    except ValueError:
        raise InputError(f"{what}: {key}={given!r}; expected a number") from None
    if not math.isfinite(value):
        raise InputError(f"{what}: {key} must be a finite number")
    return value


def _ssd(name: str, specs: Sequence[OutputSpec], outputs: Sequence[np.ndarray], *, input_hw: tuple[int, int],
         by_user: bool) -> Decoder:
    """An SSD decoder from a preset name, or "custom key=value ..."."""
    order = det.ssd_output_order([s.shape for s in specs]) if len(specs) == 2 else _ssd_pair(specs)
    word, _, rest = name.partition(" ")
    if word.lower() == "custom":
        config = _custom_ssd(_pairs(rest, "custom SSD anchors"), input_hw)
    else:
        try:
            config = det.SsdPreset(word.lower()).config
        except ValueError:
            raise InputError(f"SSD preset {word!r}: expected one of {', '.join(p.value for p in det.SsdPreset)}, or "
                             "custom key=value ...") from None
    regressors = outputs[order[0]]
    det.decode_ssd(regressors[:1], outputs[order[1]][:1], config=config)  # refuses anchors that do not fit
    if config.input_size != (input_hw[1], input_hw[0]):
        raise InputError(f"{config.name}: anchors for a {config.input_size[0]}x{config.input_size[1]} input, but the "
                         f"model's input is {input_hw[1]}x{input_hw[0]}")
    words = det.SsdPreset(config.name).description if config.name in set(det.SsdPreset) else \
        f"custom SSD anchors ({config.num_anchors} anchors, {config.coding.num_keypoints} keypoints)"
    why = "chosen" if by_user else f"{config.num_anchors} anchors and {config.coding.num_coords} values per box fit it"
    return Decoder(DecoderKind.SSD, order, config.input_size, config.coding.min_score_thresh or 0.5, ssd=config,
                   description=f"SSD head: {words} ({why}); {config.nms.algorithm.description}", set_by_user=by_user)


def _ssd_pair(specs: Sequence[OutputSpec]) -> tuple[int, int]:
    """(regressors, scores) among more than two outputs: the boxes and box-score roles."""
    boxes = [s.index for s in specs if s.role is Role.BOXES]
    scores = [s.index for s in specs if s.role is Role.BOX_SCORES]
    if len(boxes) != 1 or len(scores) != 1:
        raise InputError("SSD decoding reads two outputs, box regressors [1, A, K] and scores [1, A, 1]; set their "
                         "roles to boxes and box_scores")
    return boxes[0], scores[0]


def _custom_ssd(options: dict[str, str], input_hw: tuple[int, int]) -> det.SsdConfig:
    """MediaPipe-style anchors and coding from key=value options (the face detector's values by default)."""
    what = "custom SSD anchors"
    try:
        strides = tuple(int(s) for s in options.pop("strides", "8,16,16,16").split(","))
    except ValueError:
        raise InputError(f"{what}: strides must be whole numbers, comma-separated: strides=8,16,16,16") from None
    height, width = input_hw
    keypoints = int(_number(options, "keypoints", 0, what))
    anchors = det.AnchorOptions(
        input_width=width, input_height=height, num_layers=len(strides), strides=strides,
        min_scale=_number(options, "min_scale", 0.1484375, what), max_scale=_number(options, "max_scale", 0.75, what),
        anchor_offset_x=_number(options, "anchor_offset_x", 0.5, what),
        anchor_offset_y=_number(options, "anchor_offset_y", 0.5, what),
        fixed_anchor_size=bool(_number(options, "fixed_anchor_size", 1, what)),
        interpolated_scale_aspect_ratio=_number(options, "interpolated_scale_aspect_ratio", 1.0, what))
    coding = det.BoxCoding(x_scale=width, y_scale=height, w_scale=width, h_scale=height, reverse_output_order=True,
                           num_keypoints=keypoints, sigmoid_score=True, score_clipping_thresh=100.0,
                           min_score_thresh=_number(options, "min_score", 0.5, what))
    nms = det.NmsOptions(iou_threshold=_number(options, "nms_iou", 0.3, what), algorithm=det.NmsAlgorithm.WEIGHTED)
    if options:
        raise InputError(f"{what}: unknown option {', '.join(sorted(options))}; expected strides, min_scale, "
                         "max_scale, anchor_offset_x/y, fixed_anchor_size, interpolated_scale_aspect_ratio, "
                         "keypoints, min_score, nms_iou")
    return det.SsdConfig(anchors, coding, nms, name="custom")


def _yolo(specs: Sequence[OutputSpec], outputs: Sequence[np.ndarray], *, input_hw: tuple[int, int],
          options: dict[str, str], by_user: bool) -> Decoder:
    """A YOLO decoder on the one boxes output (or the only 3-d output), its format read from float32's first image."""
    candidates = [s for s in specs if s.role is Role.BOXES] or [s for s in specs if len(s.shape) == 3]
    if len(candidates) != 1:
        raise InputError(f"YOLO decoding reads one [1, 4+C, A] or [1, A, 4+C] output; this model has "
                         f"{len(candidates)} such outputs")
    spec = candidates[0]
    layout = options.pop("layout", None)
    try:
        fmt = det.YoloFormat.infer(
            outputs[spec.index][0], num_classes=int(options.pop("classes")) if "classes" in options else None,
            objectness=options.pop("objectness", "0") in ("1", "true", "yes"),
            layout=det.YoloLayout(layout) if layout else None)
    except ValueError:
        raise InputError("yolo: classes must be a whole number and layout channels_first or channels_last") from None
    if options:
        raise InputError(f"yolo: unknown option {', '.join(sorted(options))}; expected classes, objectness, layout")
    size = (input_hw[1], input_hw[0])
    return Decoder(DecoderKind.YOLO, (spec.index,), size, YOLO_THRESHOLD, yolo=fmt,
                   description=f"YOLO-style output {spec.name} {spec.shape_text}: {fmt.describe()}; per-class NMS at "
                               "IoU 0.7 (ultralytics' defaults)", set_by_user=by_user)


def _postprocess(specs: Sequence[OutputSpec], outputs: Sequence[np.ndarray], *, input_hw: tuple[int, int],
                 by_user: bool) -> Decoder:
    order = postprocess_order([s.shape for s in specs], outputs, [s.name for s in specs])
    if order is None:
        raise InputError("postprocess: expected the four outputs of TFLite_Detection_PostProcess, boxes [1, N, 4], "
                         "classes [1, N], scores [1, N], count [1]")
    return Decoder(DecoderKind.POSTPROCESS, order, (input_hw[1], input_hw[0]), 0.5,
                   description="TFLite_Detection_PostProcess outputs (boxes, classes, scores, count): decoded and "
                               "suppressed inside the model", set_by_user=by_user)


# ----------------------------------------------------------------------------------------------- decoding


def decode(decoder: Decoder, outputs: Sequence[np.ndarray]) -> tuple[det.Detections, ...]:
    """Each image's detections down to the decoder's floor, best first, at most `MAX_KEPT` (arrays [images, ...])."""
    images = len(outputs[decoder.outputs[0]])
    found = []
    for i in range(images):
        one = [outputs[k][i:i + 1] for k in decoder.outputs]
        if decoder.kind is DecoderKind.SSD and decoder.ssd is not None:
            found.append(det.decode_ssd(one[0], one[1], config=decoder.ssd, min_score=decoder.floor))
        elif decoder.kind is DecoderKind.YOLO and decoder.yolo is not None:
            found.append(det.decode_yolo(one[0], fmt=decoder.yolo, input_size=decoder.input_size,
                                         min_score=decoder.floor))
        else:
            boxes, classes, scores, count = one
            found.append(det.read_detection_postprocess(boxes=boxes, classes=classes, scores=scores, count=count,
                                                        input_size=decoder.input_size).above(decoder.floor))
    return tuple(d.select(np.arange(min(len(d), MAX_KEPT))) for d in found)


@dataclass(frozen=True)
class ImageBoxes:
    """One image's detections as a result keeps them: boxes (x0, y0, x1, y1) in input pixels, scores, classes."""

    boxes: tuple[tuple[float, float, float, float], ...] = ()
    scores: tuple[float, ...] = ()
    classes: tuple[int, ...] = ()
    keypoints: tuple[tuple[tuple[float, float], ...], ...] = ()  # per detection; empty without keypoints

    @classmethod
    def of(cls, found: det.Detections) -> ImageBoxes:
        """Rounded to a tenth of a pixel and 1e-4 of a score (what a picture and a re-scoring need)."""
        boxes = tuple(tuple(round(float(v), 1) for v in box) for box in found.boxes)
        points = () if found.keypoints is None else tuple(
            tuple((round(float(x), 1), round(float(y), 1)) for x, y in kp) for kp in found.keypoints)
        return cls(boxes, tuple(round(float(s), 4) for s in found.scores),  # type: ignore[arg-type]
                   tuple(int(c) for c in found.classes), points)

    def detections(self, keypoints: int = 0) -> det.Detections:
        """Back to `Detections` (with room for `keypoints` each when there are none)."""
        points = np.asarray(self.keypoints, np.float64) if self.keypoints else (
            np.zeros((len(self.boxes), keypoints, 2)) if keypoints else None)
        return det.Detections(np.reshape(np.asarray(self.boxes, np.float64), (-1, 4)), np.asarray(self.scores),
                              np.asarray(self.classes, np.int64), points)


def kept(images: Sequence[ImageBoxes], keypoints: int = 0) -> tuple[det.Detections, ...]:
    """Stored detections back as `Detections`, one per image."""
    return tuple(i.detections(keypoints) for i in images)


# ----------------------------------------------------------------------------------------------- against float32


@dataclass(frozen=True)
class BoxSummary:
    """A variant's detections against float32's on the images (and against ground truth when given), as totals.

    Float32's detections are the reference (see `detection.box_fidelity`). Sums are kept so that
    shards of a dataset add up exactly (`merged`).
    """

    threshold: float  # both sides keep detections scoring at least this
    iou_threshold: float
    reference_boxes: int  # float32's detections at the threshold
    true_positives: int
    missed: int
    extra: int
    iou_sum: float = 0.0
    score_error_sum: float = 0.0
    keypoint_error_sum: float = 0.0
    keypoint_matches: int = 0
    map_50: float | None = None  # against ground truth (COCO mAP, pycocotools)
    map_50_95: float | None = None

    @classmethod
    def of(cls, reference: Sequence[det.Detections], variant: Sequence[det.Detections], *,
           threshold: float, iou_threshold: float = 0.5) -> BoxSummary:
        """Matches each image's detections (`detection.box_fidelity`) and keeps the totals."""
        found = det.box_fidelity(reference, variant, score_threshold=threshold, iou_threshold=iou_threshold)
        keypoints = [e for m in found.images for e in m.keypoint_errors]
        return cls(threshold, iou_threshold, found.true_positives + found.missed, found.true_positives, found.missed,
                   found.extra, float(sum(i for m in found.images for i in m.ious)),
                   float(sum(e for m in found.images for e in m.score_errors)), float(sum(keypoints)), len(keypoints))

    @property
    def precision(self) -> float:
        """Matched / the variant's detections (1 when it found none and there were none)."""
        found = self.true_positives + self.extra
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        """Matched / float32's detections (1 when there were none)."""
        return self.true_positives / self.reference_boxes if self.reference_boxes else 1.0

    @property
    def f1(self) -> float:
        """The harmonic mean of precision and recall: the headline agreement of a detector."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def mean_iou(self) -> float | None:
        """Mean IoU of the matched boxes."""
        return self.iou_sum / self.true_positives if self.true_positives else None

    @property
    def mean_score_error(self) -> float | None:
        """Mean |score difference| of the matches."""
        return self.score_error_sum / self.true_positives if self.true_positives else None

    @property
    def mean_keypoint_error_px(self) -> float | None:
        """Mean keypoint distance of the matches, in input pixels (None without keypoints)."""
        return self.keypoint_error_sum / self.keypoint_matches if self.keypoint_matches else None

    def merged(self, other: BoxSummary) -> BoxSummary:
        """Two shards' totals as one (mAP is not additive: dropped)."""
        return replace(self, reference_boxes=self.reference_boxes + other.reference_boxes,
                       true_positives=self.true_positives + other.true_positives, missed=self.missed + other.missed,
                       extra=self.extra + other.extra, iou_sum=self.iou_sum + other.iou_sum,
                       score_error_sum=self.score_error_sum + other.score_error_sum,
                       keypoint_error_sum=self.keypoint_error_sum + other.keypoint_error_sum,
                       keypoint_matches=self.keypoint_matches + other.keypoint_matches, map_50=None, map_50_95=None)

    def figures(self) -> dict[str, float | int | None]:
        """The derived figures by name (what reports and the CLI JSON print beside the sums)."""
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, "mean_iou": self.mean_iou,
                "mean_score_error": self.mean_score_error, "mean_keypoint_error_px": self.mean_keypoint_error_px}


def with_truth(summary: BoxSummary, truth: Sequence[det.GroundTruth], found: Sequence[det.Detections]) -> BoxSummary:
    """The summary with mAP@0.5 and mAP@0.5:0.95 of `found` against ground truth (all detections above the floor)."""
    scored = det.mean_average_precision(truth, found)
    return replace(summary, map_50=scored.map_50, map_50_95=scored.map_50_95)


# ----------------------------------------------------------------------------------------------- the shared scale


@dataclass(frozen=True)
class SharedScale:
    """One output tensor holding box coordinates and probabilities whose ranges differ by far (the int8 trap)."""

    output: int
    box_range: float  # max |box value| in float32's output
    score_range: float  # max score
    classes: int
    head: tuple[str, ...] = ()  # the layers between the last computing layers and the output (`head_layers`)

    @property
    def steps(self) -> float:
        """int8 steps left to the scores when one scale covers the boxes (255 levels over the box range)."""
        return 255.0 * self.score_range / (2 * self.box_range) if self.box_range else 255.0

    def sentence(self, name: str) -> str:
        """The cause, in one sentence, with the way out."""
        return (f"{name} holds box coordinates up to {self.box_range:.0f} and {self.classes} class scores up to "
                f"{self.score_range:.2f} in one tensor: full-integer quantization gives it one scale, set by the "
                f"coordinates, which leaves the scores about {max(self.steps, 1.0):.0f} int8 step"
                f"{'' if self.steps < 1.5 else 's'} (they read 0 or ~1). Keep the head (its reshapes, concatenation "
                "and transpose) in float with float output, or quantize activations to int16 (int16x8)")


def shared_scale(decoder: Decoder | None, outputs: Sequence[np.ndarray], *,
                 float_model: bytes | None = None) -> SharedScale | None:
    """A YOLO-style output whose box values span at least `SHARED_RATIO` times its scores' range (float32's values).

    With `float_model`, the finding names the head's layers (`head_layers`): what to keep in float.
    """
    if decoder is None or decoder.yolo is None:
        return None
    values = np.asarray(outputs[decoder.outputs[0]], np.float64)
    table = np.swapaxes(values, 1, 2) if decoder.yolo.layout is det.YoloLayout.CHANNELS_FIRST else values
    boxes, scores = table[..., :4], table[..., 4:]
    box_range = float(np.nanmax(np.abs(boxes))) if boxes.size else 0.0
    score_range = float(np.nanmax(np.abs(scores))) if scores.size else 0.0
    if not (score_range > 0 and box_range >= SHARED_RATIO * score_range):
        return None
    head = head_layers(float_model, decoder.outputs[0]) if float_model is not None else ()
    return SharedScale(decoder.outputs[0], box_range, score_range, decoder.yolo.num_classes, head)


_LAYOUT_OPS = frozenset({"RESHAPE", "CONCATENATION", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "PACK", "SHAPE",
                         "STRIDED_SLICE", "LOGISTIC", "SOFTMAX", "SLICE", "GATHER"})


def head_layers(float_model: bytes, output: int = 0) -> tuple[str, ...]:
    """The output tensor names of the ops that only move, join or squash values on the way to one output.

    Walks from the output's producer up through reshapes, concatenations, transposes, slices
    and sigmoids (and the ops computing their shapes), stopping at the first op that computes
    (a convolution, a dense layer, an add): the layers to keep in float for a head whose one
    tensor mixes scales. Names as `builders.graph_layers` gives them, in execution order.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType  # pylint: disable=import-outside-toplevel

    from quant_core.builders import backend_model  # pylint: disable=import-outside-toplevel

    interp = Interpreter(model_content=bytes(backend_model(float_model)),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # pylint: disable=protected-access
    producer = {t: i for i, op in enumerate(ops) for t in op["outputs"]}
    wanted = interp.get_output_details()[output]["index"]
    chosen: set[int] = set()
    pending = [producer[wanted]] if wanted in producer else []
    while pending:
        i = pending.pop()
        if i in chosen or ops[i]["op_name"] not in _LAYOUT_OPS:
            continue
        chosen.add(i)
        pending += [producer[t] for t in ops[i]["inputs"] if t in producer]
    return tuple(names[t] for i in sorted(chosen) for t in ops[i]["outputs"] if t in names)


def described(specs: Sequence[OutputSpec], decoder: Decoder | None) -> tuple[OutputSpec, ...]:
    """The specs as the decoder reads them: a YOLO output's channels are its 4+C values, said in its description."""
    if decoder is None or decoder.yolo is None:
        return tuple(specs)
    fmt = decoder.yolo
    axis = 1 if fmt.layout is det.YoloLayout.CHANNELS_FIRST else -1
    found = []
    for spec in specs:
        if spec.index == decoder.outputs[0]:
            candidates = spec.shape[2] if axis == 1 else spec.shape[1]
            spec = replace(spec, channel_axis=axis, channel_names=yolo_channel_names(fmt), description=(
                f"{spec.name} {spec.shape_text}: {candidates} candidate boxes of cx, cy, w, h "
                f"({fmt.units.value}){' and objectness' if fmt.objectness else ''} and {fmt.num_classes} class scores"))
        found.append(spec)
    return tuple(found)


def yolo_channel_names(fmt: det.YoloFormat) -> tuple[str, ...]:
    """A YOLO output's 4+C values in words: "box cx" ... "box h", "objectness", "class score 0" ..."""
    return (*(f"box {v}" for v in ("cx", "cy", "w", "h")), *(("objectness",) if fmt.objectness else ()),
            *(f"class score {k}" for k in range(fmt.num_classes)))


def read_truth(paths: Sequence[str], images: ImageSet, preprocessing: Preprocessing,
               decoder: Decoder) -> tuple[tuple[det.GroundTruth | None, ...], str]:
    """True boxes per image, in the decoder's input pixels (None: an image the annotations do not cover), and in words.

    Raises:
        InputError: files that cannot be read or do not fit the images or the decoder's classes.
    """
    return read_boxes(paths, images, preprocessing, input_size=decoder.input_size,
                      num_classes=decoder.yolo.num_classes if decoder.yolo is not None else None)


def read_boxes(paths: Sequence[str], images: ImageSet, preprocessing: Preprocessing, *,
               input_size: tuple[int, int], num_classes: int | None = None) \
        -> tuple[tuple[det.GroundTruth | None, ...], str]:
    """True boxes per image in the pixels of an input of `input_size` (width, height), and in words.

    One .json file: COCO detection annotations (images matched by file name). Otherwise YOLO
    .txt files named like the images, or folders holding them at any depth (an image without
    one has no objects).

    Raises:
        InputError: files that cannot be read or do not fit the images (or a class past `num_classes`).
    """
    fit = det.Fit.CENTER_CROP if preprocessing.center_crop else det.Fit.STRETCH
    mappings = {item.name: det.ImageToInput.of(fit=fit, image_size=(item.pixels.shape[1], item.pixels.shape[0]),
                                               input_size=input_size) for item in images.items}
    files = [Path(p) for p in paths]
    if len(files) == 1 and files[0].suffix.lower() == ".json":
        found = det.read_coco_json(files[0], images=mappings)
        what = f"COCO boxes of {len(found)} images ({files[0].name})"
    else:
        odd = [f.name for f in files if f.suffix.lower() != ".txt" and not f.is_dir()]
        if odd:
            raise InputError(f"ground-truth boxes: {odd[0]} is neither a COCO .json file nor a YOLO .txt file")
        texts: dict[str, str] = {}
        for f in files:
            texts.update({p.name: det.read_text(p, what="ground truth") for p in sorted(f.rglob("*.txt"))}
                         if f.is_dir() else {f.name: det.read_text(f, what="ground truth")})
        found = det.read_yolo_txt(texts, images=mappings, num_classes=num_classes)
        what = f"YOLO boxes of {len(texts)} images"
    aligned = tuple(found.get(item.name) for item in images.items)
    objects = sum(len(t) for t in aligned if t is not None)
    return aligned, f"{what}, {objects} objects"
