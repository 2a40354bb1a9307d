"""Detectors: raw outputs decoded into boxes, and boxes compared (with float32's, or with ground truth).

Three decoders turn one image's raw outputs into `Detections` (boxes in the model input's
pixels, best score first):

- `decode_ssd`: anchor-based SSD heads with raw outputs (regressors [1, A, K] + scores
  [1, A, C]), as MediaPipe's face, palm and pose detectors have. Anchors are generated as
  MediaPipe's SsdAnchorsCalculator does (`AnchorOptions`), boxes and keypoints decoded as its
  TensorsToDetectionsCalculator does (`BoxCoding`), then suppressed as its
  NonMaxSuppressionCalculator does (`NmsOptions`, weighted by default). `SsdPreset` names the
  values of MediaPipe's own graph configs; `SsdConfig` takes custom ones.
- `decode_yolo`: a YOLO-style single output [1, 4+C, A] or [1, A, 4+C] (ultralytics' export
  layouts), its layout and box units read from the float model's output by `YoloFormat.infer`.
- `read_detection_postprocess`: the four outputs of a model that ends in
  TFLite_Detection_PostProcess (boxes, classes, scores, count).

Two comparisons: `box_fidelity` matches a variant's detections with float32's on the same
images (precision, recall, F1, IoU, score and keypoint errors, and which boxes were missed or
extra); `mean_average_precision` scores detections against ground truth with pycocotools,
read from COCO JSON (`read_coco_json`) or YOLO txt files (`read_yolo_txt`) and mapped into the
model input's pixels by `ImageToInput`.

Re-scoring is cheap by design: decode once with a low score floor, keep the `Detections`, and
pass the score threshold to the comparisons, which filter before matching; no model runs
again. Plain non-maximum suppression commutes with that filter exactly; weighted suppression
keeps the same detections but blends each box with its overlapping neighbours down to the
floor it was decoded with.

Modules: `found` (Detections, overlap, suppression), `ssd`, `yolo` (and the PostProcess op's outputs),
`matching` (against float32), `truth` (COCO and YOLO ground truth), `average_precision` (mAP).
Pure numpy (pycocotools for mAP); bad input is one `InputError` line.
"""

from __future__ import annotations

from quant_core.detection.average_precision import MapResult, mean_average_precision
from quant_core.detection.found import (
    Detections,
    NmsAlgorithm,
    NmsOptions,
    Size,
    frozen_array,
    iou_matrix,
    nms,
    suppress,
    weighted_nms,
)
from quant_core.detection.matching import BoxFidelity, ImageMatch, box_fidelity, match_detections
from quant_core.detection.ssd import (
    AnchorOptions,
    BoxCoding,
    SsdConfig,
    SsdPreset,
    decode_ssd,
    generate_anchors,
    matching_presets,
    ssd_output_order,
)
from quant_core.detection.truth import (
    BOX_SLACK_PX,
    Fit,
    GroundTruth,
    ImageToInput,
    read_coco_json,
    read_text,
    read_yolo_txt,
)
from quant_core.detection.yolo import (
    NORMALIZED_LIMIT,
    BoxUnits,
    YoloFormat,
    YoloLayout,
    decode_yolo,
    read_detection_postprocess,
)

__all__ = [
    "AnchorOptions", "BOX_SLACK_PX", "BoxCoding", "BoxFidelity", "BoxUnits", "Detections", "Fit", "GroundTruth",
    "ImageMatch", "ImageToInput", "MapResult", "NORMALIZED_LIMIT", "NmsAlgorithm", "NmsOptions", "Size",
    "SsdConfig", "SsdPreset", "YoloFormat", "YoloLayout", "box_fidelity", "decode_ssd", "decode_yolo",
    "frozen_array", "generate_anchors", "iou_matrix", "match_detections", "matching_presets",
    "mean_average_precision", "nms", "read_coco_json", "read_detection_postprocess", "read_text", "read_yolo_txt",
    "ssd_output_order", "suppress", "weighted_nms",
]
