"""What decoding, suppressing and matching detections cost per image, next to one run of the face detector.

quant_core.detection turns a detector's raw outputs into boxes (SSD anchors + box decoding +
weighted NMS for MediaPipe's face detector; layout inference + decoding + per-class NMS for a
YOLO-style output), matches a variant's boxes with float32's (box_fidelity) and scores them
against ground truth (mean_average_precision, pycocotools). This times each step per image:

- face detector (MediaPipe short range, 896 anchors): on its real outputs for the bundled
  photos when sample_models/face_detection_short_range.tflite exists (a "variant" made by
  rounding those outputs to an int8-like grid), else on synthetic outputs of the same shape;
  decoded at the preset's floor (0.5) and at a floor of 0.1 kept for a score slider;
- YOLO-style [1, 84, 2100] (80 classes, 320x320: 40x40 + 20x20 + 10x10 candidates), synthetic:
  five objects seen by a few neighbouring candidates each over a low background;
- matching a variant with float32 (what a score slider re-runs), and mAP with pycocotools
  (per call over all images, shown per image).

Each figure is the median of many repeats (ms per image) and its ratio to one median
`invoke()` of the face detector (1 thread) when the model is there.

Usage: .venv/bin/python bench/bench_detection.py [--no-write] [--quick]
Writes its section of bench/RESULTS.md (between the detection-bench markers).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
from results_md import report  # noqa: E402  pylint: disable=wrong-import-position

from quant_core import detection  # noqa: E402  pylint: disable=wrong-import-position

SAMPLE = REPO / "sample_models"
FACE_MODEL = SAMPLE / "face_detection_short_range.tflite"
PEOPLE = SAMPLE / "people_images"
FACE = detection.SsdPreset.FACE_SHORT_RANGE.config
YOLO_SIZE, YOLO_CLASSES = (320, 320), 80
YOLO_GRIDS = (40, 20, 10)  # strides 8, 16, 32 on 320 pixels: 2100 candidates


def median_ms(step: Callable[[], Any], *, repeats: int) -> float:
    """Median wall time of `step` in milliseconds, after one warm-up call."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def face_outputs() -> tuple[list[tuple[np.ndarray, np.ndarray]], float | None, str]:
    """The face detector's raw outputs per photo, its median invoke in ms, and where the outputs come from."""
    if not FACE_MODEL.exists():
        return synthetic_face_outputs(), None, "synthetic outputs (the model file is not there)"
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    interpreter = Interpreter(model_path=str(FACE_MODEL), num_threads=1)
    interpreter.allocate_tensors()
    names = {d["name"]: d["index"] for d in interpreter.get_output_details()}
    outputs, feed = [], interpreter.get_input_details()[0]["index"]
    for path in sorted(PEOPLE.iterdir()):
        with Image.open(path) as image:
            interpreter.set_tensor(feed, letterbox(image)[None])
        interpreter.invoke()
        outputs.append((interpreter.get_tensor(names["regressors"]).copy(),
                        interpreter.get_tensor(names["classificators"]).copy()))
    invoke = median_ms(interpreter.invoke, repeats=50)
    return outputs, invoke, f"real outputs on {len(outputs)} bundled photos"


def letterbox(image: Any) -> np.ndarray:
    """A photo fitted into 128x128, padded with black, in [-1, 1] (as MediaPipe feeds the face detector)."""
    from PIL import Image

    rgb = image.convert("RGB")
    side = max(rgb.size)
    square = Image.new("RGB", (side, side))
    square.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
    return np.asarray(square.resize((128, 128), Image.Resampling.BILINEAR), np.float32) / 127.5 - 1.0


def synthetic_face_outputs(count: int = 7) -> list[tuple[np.ndarray, np.ndarray]]:
    """Face-detector-shaped outputs: one face seen by a few neighbouring anchors over a low background."""
    rng = np.random.default_rng(0)
    outputs = []
    for _ in range(count):
        regressors = rng.normal(0, 2, (1, 896, 16)).astype(np.float32)
        regressors[0, :, 2:4] = rng.uniform(10, 40, (896, 2))
        logits = rng.normal(-6, 1.5, (1, 896, 1)).astype(np.float32)
        logits[0, rng.integers(0, 896, 6), 0] = rng.uniform(0.5, 4, 6)
        outputs.append((regressors, logits))
    return outputs


def int8_like(array: np.ndarray) -> np.ndarray:
    """An array rounded to 256 levels over its range (what an int8 output's dequantized values look like)."""
    low, high = float(array.min()), float(array.max())
    step = (high - low) / 255 or 1.0
    return (np.round((array - low) / step) * step + low).astype(np.float32)


def yolo_outputs(count: int = 7) -> list[np.ndarray]:
    """[1, 84, 2100] outputs (pixels, 320x320): five objects seen by neighbouring candidates, low background."""
    rng = np.random.default_rng(1)
    anchors = sum(g * g for g in YOLO_GRIDS)
    outputs = []
    for _ in range(count):
        table = np.zeros((anchors, 4 + YOLO_CLASSES), np.float32)
        table[:, :2] = rng.uniform(0, 320, (anchors, 2))
        table[:, 2:4] = rng.uniform(8, 120, (anchors, 2))
        table[:, 4:] = rng.uniform(0, 0.03, (anchors, YOLO_CLASSES))
        for obj in range(5):
            box, cls = rng.uniform([40, 40, 20, 20], [280, 280, 120, 120]), rng.integers(0, YOLO_CLASSES)
            for row in rng.choice(anchors, 8, replace=False):
                table[row, :4] = box + rng.normal(0, 3, 4)
                table[row, 4 + cls] = rng.uniform(0.3, 0.95) - 0.05 * obj
        outputs.append(table.T[None])
    return outputs


def rows_for_faces(outputs: list[tuple[np.ndarray, np.ndarray]], repeats: int) -> list[tuple[str, float]]:
    """Per-image figures for the face detector's decoding and matching."""
    variant = [(int8_like(r), int8_like(s)) for r, s in outputs]
    decode = [detection.decode_ssd(r, s, config=FACE, min_score=0.1) for r, s in outputs]
    decoded_variant = [detection.decode_ssd(r, s, config=FACE, min_score=0.1) for r, s in variant]
    truth = [detection.GroundTruth(d.above(0.5).boxes, d.above(0.5).classes) for d in decode]
    n = len(outputs)
    return [
        ("face: decode + weighted NMS (floor 0.5, the preset's)",
         median_ms(lambda: [detection.decode_ssd(r, s, config=FACE) for r, s in outputs], repeats=repeats) / n),
        ("face: decode + weighted NMS (floor 0.1, kept for a slider)",
         median_ms(lambda: [detection.decode_ssd(r, s, config=FACE, min_score=0.1) for r, s in outputs],
                   repeats=repeats) / n),
        ("face: match a variant with float32 at a new score threshold",
         median_ms(lambda: detection.box_fidelity(decode, decoded_variant, score_threshold=0.5),
                   repeats=repeats) / n),
        ("face: mAP@0.5 and @0.5:0.95 (pycocotools), per image of one call",
         median_ms(lambda: detection.mean_average_precision(truth, decoded_variant, score_threshold=0.1),
                   repeats=max(repeats // 10, 5)) / n),
    ]


def rows_for_yolo(outputs: list[np.ndarray], repeats: int) -> list[tuple[str, float]]:
    """Per-image figures for a YOLO-style output's decoding and matching."""
    fmt = detection.YoloFormat.infer(outputs[0], num_classes=YOLO_CLASSES)
    variant = [int8_like(o) for o in outputs]
    decoded = [detection.decode_yolo(o, fmt=fmt, input_size=YOLO_SIZE, min_score=0.05) for o in outputs]
    decoded_variant = [detection.decode_yolo(o, fmt=fmt, input_size=YOLO_SIZE, min_score=0.05) for o in variant]
    n = len(outputs)
    return [
        ("YOLO 2100x80: infer the format + decode + per-class NMS (floor 0.25)",
         median_ms(lambda: [detection.decode_yolo(o, fmt=detection.YoloFormat.infer(o), input_size=YOLO_SIZE)
                            for o in outputs], repeats=repeats) / n),
        ("YOLO 2100x80: decode + per-class NMS (floor 0.05, kept for a slider)",
         median_ms(lambda: [detection.decode_yolo(o, fmt=fmt, input_size=YOLO_SIZE, min_score=0.05)
                            for o in outputs], repeats=repeats) / n),
        ("YOLO 2100x80: match a variant with float32 at a new score threshold",
         median_ms(lambda: detection.box_fidelity(decoded, decoded_variant, score_threshold=0.25),
                   repeats=repeats) / n),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = parser.parse_args()
    repeats = 20 if args.quick else 200
    faces, invoke_ms, source = face_outputs()
    rows = rows_for_faces(faces, repeats) + rows_for_yolo(yolo_outputs(), repeats)
    lines = ["| step | ms per image | × one face-detector invoke |", "|---|---|---|"]
    if invoke_ms is not None:
        lines.append(f"| face detector: one `invoke()` (1 thread), for scale | {invoke_ms:.3f} | 1 |")
    for name, ms in rows:
        ratio = f"{ms / invoke_ms:.2f}" if invoke_ms else "n/a"
        lines.append(f"| {name} | {ms:.3f} | {ratio} |")
    lines.append("")
    lines.append(f"Face detector: {source}; the variant is its outputs rounded to 256 levels. YOLO: synthetic "
                 f"outputs. Medians of {repeats} repeats on this machine's 2 cores (shared).")
    report("detection-bench", "Detections: decoding, suppression and matching per image", "\n".join(lines),
           write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
