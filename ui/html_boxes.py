"""A detector in the HTML report: how its outputs were read as boxes, and each image's boxes drawn, float32's beside
every variant's, missed and extra boxes marked as on Compare (ui.box_views), at the decoder's score threshold."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping

from PIL import Image

from quant_core import CompareResult
from quant_core import detection as det
from quant_core.boxes import kept
from ui import box_views, task_views
from ui.task_views import Photo

REPORT_SIDE = 192  # px: the longer side of each drawn picture in the report
IMAGES_DRAWN = 12  # images drawn in the report, those with the most missed and extra boxes first


def decoder_paragraph(result: CompareResult) -> str:
    """How the boxes were read (the decoder), what they were scored against, and a shared scale's cause."""
    decoder = result.decoder
    if decoder is None:
        return ("<p>No decoder read this detector's outputs as boxes: its outputs are compared as tensors "
                "only.</p>")
    truth = (f" Against ground truth ({html.escape(result.truth_source)}): mAP@0.5 and mAP@0.5:0.95 "
             "(pycocotools)." if result.truth_source else "")
    scale = result.shared_scale
    name = next((s.name for s in result.output_specs if scale is not None and s.index == scale.output), "the output")
    cause = "" if scale is None else f'<div class="note">{html.escape(scale.sentence(name))}.</div>'
    return (f"<p>Boxes read by the decoder <code>{html.escape(decoder.choice)}</code>"
            f"{' (chosen by the user)' if decoder.set_by_user else ''}: {html.escape(decoder.description)}. "
            f"Kept at a score of {decoder.threshold:g}; a variant's box matches float32's at IoU ≥ 0.5 with the "
            f"same class.{truth}</p>{cause}")


def _picture(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=85)
    return f'<img class="boxes" alt="" src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def boxes_table(result: CompareResult, thumbs: Mapping[str, Photo], *, limit: int = IMAGES_DRAWN) -> str:
    """Each image's boxes: float32's, then each variant's against them, the images with most wrong boxes first."""
    base, decoder = result.baseline, result.decoder
    if base is None or decoder is None or not base.detections:
        return ""
    points, threshold = decoder.keypoints, decoder.threshold
    variants = [v for v in result.variants if v.ok and v is not base and len(v.detections) == len(base.detections)]
    found = {v.name: det.box_fidelity(kept(base.detections, points), kept(v.detections, points),
                                      score_threshold=threshold) for v in variants}
    order = box_views.worst_first(found, len(base.detections))[:limit]
    labelling = box_views.Labelling(classes=box_views.many_classes(result))
    pre = result.preprocessing
    head = "<tr><th>float32</th>" + "".join(f"<th>{html.escape(v.name)}</th>" for v in variants) + "</tr>"
    rows = []
    for k in order:
        frame = task_views.model_frame(thumbs.get(result.images[k].file), pre, side=REPORT_SIDE)
        reference = base.detections[k].detections(points)
        count = int((reference.scores >= threshold).sum())
        alone = box_views.reference_boxes(frame, pre, reference, threshold=threshold, labelling=labelling)
        name = html.escape(result.images[k].file.split("/")[-1])
        cells = [f"<td>{_picture(alone)}<br>{name}: {count} box{'es' * (count != 1)}</td>"]
        for v in variants:
            drawn = box_views.compared_boxes(frame, pre, reference, v.detections[k].detections(points),
                                             threshold=threshold, labelling=labelling)
            match = found[v.name].images[k]
            wrong = "diff" if match.missed or match.extra else ""
            cells.append(f'<td class="{wrong}">{_picture(drawn)}<br>'
                         f"{html.escape(box_views.image_caption(match))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    shown = (f"the {len(order)} of {len(result.images)} images with the most missed and extra boxes"
             if len(order) < len(result.images) else "every image, those with the most missed and extra boxes first")
    return (f"<p>Boxes on {shown}, each photo as the model sees it: float32's in green; on each variant's, its "
            "own in red, a float32 box it missed thick in yellow, a box of its own matching none (extra) in "
            f'orange.</p><table class="img boxes">{head}{"".join(rows)}</table>')
