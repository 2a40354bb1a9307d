"""Ground-truth boxes read from COCO JSON or YOLO txt files, moved into the model input's pixels."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from quant_core._serde import json_kind, parse_json
from quant_core.detection.found import Detections, Size, frozen_array
from quant_core.errors import InputError
from quant_core.inputs.ground_truth import read_text

# ----------------------------------------------------------------------------------------------- ground truth


class Fit(enum.StrEnum):
    """How an image was fitted into the model input (where its pixels land)."""

    STRETCH = "stretch"  # the whole image resized to the input, aspect not kept (the workbench's default)
    CENTER_CROP = "center_crop"  # the centred square, resized (the workbench's centre-crop preprocessing)
    LETTERBOX = "letterbox"  # the whole image, aspect kept, centred and padded (MediaPipe's keep_aspect_ratio)


@dataclass(frozen=True)
class ImageToInput:
    """Where one image's pixels land in the model input: x_in = x * scale_x + offset_x (y alike).

    Attributes:
        image_size: (width, height) of the image.
        input_size: (width, height) of the model input.
        scale_x: input pixels per image pixel, horizontally.
        scale_y: same, vertically.
        offset_x: where the image's left edge lands (negative when cropped, positive when padded).
        offset_y: where its top edge lands.
    """

    image_size: Size
    input_size: Size
    scale_x: float
    scale_y: float
    offset_x: float = 0.0
    offset_y: float = 0.0

    @classmethod
    def of(cls, *, fit: Fit, image_size: Size, input_size: Size) -> ImageToInput:
        """The mapping of an image of `image_size` fitted into `input_size` as `fit` says."""
        (w, h), (iw, ih) = image_size, input_size
        if min(w, h, iw, ih) < 1:
            raise InputError(f"image {w}x{h} into input {iw}x{ih}: expected positive sizes")
        if fit is Fit.STRETCH:
            return cls(image_size, input_size, iw / w, ih / h)
        if fit is Fit.CENTER_CROP:
            side = min(w, h)
            sx, sy = iw / side, ih / side
            return cls(image_size, input_size, sx, sy, -((w - side) // 2) * sx, -((h - side) // 2) * sy)
        scale = min(iw / w, ih / h)
        return cls(image_size, input_size, scale, scale, (iw - w * scale) / 2, (ih - h * scale) / 2)

    def boxes_to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes [N, 4] (x0, y0, x1, y1) from the image's pixels into the input's."""
        return np.asarray(boxes, np.float64) * np.tile([self.scale_x, self.scale_y], 2) + \
            np.tile([self.offset_x, self.offset_y], 2)

    def to_image(self, detections: Detections) -> Detections:
        """Detections moved from the input's pixels into the image's (to draw them on the photo)."""
        scale, offset = np.array([self.scale_x, self.scale_y]), np.array([self.offset_x, self.offset_y])
        boxes = (detections.boxes - np.tile(offset, 2)) / np.tile(scale, 2)
        points = None if detections.keypoints is None else (detections.keypoints - offset) / scale
        return Detections(boxes, detections.scores, detections.classes, points)


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """One image's true boxes, in the model input's pixels.

    Attributes:
        boxes: [M, 4] (x0, y0, x1, y1), float64.
        classes: [M] the model's class indices, int64.
    """

    boxes: np.ndarray
    classes: np.ndarray

    def __post_init__(self) -> None:
        boxes = frozen_array(np.reshape(self.boxes, (-1, 4)), np.float64)
        classes = frozen_array(np.reshape(self.classes, (-1,)), np.int64)
        if len(classes) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(classes)} classes")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "classes", classes)

    def __len__(self) -> int:
        return len(self.boxes)


BOX_SLACK_PX = 1.0  # a true box may reach this far past its image's edge (rounding in annotation tools)


def _truth_in_input(name: str, boxes: np.ndarray, classes: np.ndarray, mapping: ImageToInput) -> GroundTruth:
    """True boxes in an image's pixels checked against its size, moved into the input and clipped to it.

    Boxes that fall wholly outside the input (cropped away) are dropped.
    """
    w, h = mapping.image_size
    outside = (boxes[:, :2] < -BOX_SLACK_PX).any(axis=1) | (boxes[:, 2] > w + BOX_SLACK_PX) | \
        (boxes[:, 3] > h + BOX_SLACK_PX)
    if outside.any():
        box = [round(float(v), 1) for v in boxes[np.argmax(outside)]]
        raise InputError(f"{name}: box {box} lies outside the {w}x{h} image; is the ground truth for this image?")
    moved = mapping.boxes_to_input(boxes)
    iw, ih = mapping.input_size
    moved = np.clip(moved, 0.0, [iw, ih, iw, ih])
    visible = np.all(moved[:, 2:] > moved[:, :2], axis=1)
    return GroundTruth(moved[visible], classes[visible])


def _image_key(name: str) -> str:
    """An image's key for matching: its file name without folders and suffix ("people/a.png" -> "a")."""
    base = PureWindowsPath(PurePosixPath(name).name).name
    return base.rsplit(".", 1)[0] if "." in base else base


def _image_keys(images: Mapping[str, ImageToInput]) -> dict[str, str]:
    """Each image name by its key; two images sharing a key are refused."""
    keys: dict[str, str] = {}
    for name in images:
        key = _image_key(name)
        if key in keys:
            raise InputError(f"images {keys[key]} and {name} share the name {key}; ground truth is matched by "
                             "file name: rename one")
        keys[key] = name
    return keys


def read_coco_json(source: str | Path, *, images: Mapping[str, ImageToInput],
                   category_to_class: Mapping[int, int] | None = None) -> dict[str, GroundTruth]:
    """True boxes from a COCO detection JSON, for the images it names.

    COCO images are matched to `images` by file name, without folders or suffix
    ("val/astronaut.jpg" matches "astronaut.png"); COCO images not given are ignored, and a
    given image COCO does not list gets no entry (score only the images returned). An image
    COCO lists without annotations has no objects. Crowd annotations (`iscrowd: 1`) are left
    out. Boxes [x, y, width, height] in the image's pixels are moved into the input's.

    Args:
        source: the JSON file.
        images: each image's name and mapping into the model input.
        category_to_class: COCO category id -> the model's class index; by default the
            categories in id order become classes 0, 1, 2... (COCO's 80 categories to a
            COCO-trained YOLO's 80 classes; one category to a one-class detector).

    Returns:
        Ground truth by image name (the keys of `images`).

    Raises:
        InputError: unreadable or malformed JSON, no given image in it, an image whose size
            differs from the JSON's, a box outside its image, an unknown category.
    """
    path = Path(source)
    data = parse_json(read_text(path, what="ground truth"), what=path.name)
    _check_coco(data, path.name)
    classes = dict(category_to_class) if category_to_class is not None else _category_classes(data, path.name)
    keys = _image_keys(images)
    found: dict[int | str, tuple[str, dict[str, Any]]] = {}
    for entry in data["images"]:
        if not (isinstance(entry, dict) and isinstance(entry.get("file_name"), str)
                and _image_key(entry["file_name"]) in keys):
            continue
        name = keys[_image_key(entry["file_name"])]
        if not isinstance(entry.get("id"), (int, str)):
            raise InputError(f"{path.name}: image {entry['file_name']!r} has id {entry.get('id')!r}; expected a number")
        if any(name == seen for seen, _ in found.values()):
            raise InputError(f"{path.name}: image {name} is listed twice ({entry['file_name']!r}); expected one entry "
                             "per image")
        found[entry["id"]] = (name, entry)
    if not found:
        raise InputError(f"{path.name}: none of its {len(data['images'])} images is one of the {len(images)} given "
                         f"(e.g. {next(iter(images), 'none')}); expected file_name entries naming the images")
    return {name: _coco_image(path.name, entry, data["annotations"], images[name], classes)
            for name, entry in found.values()}


def _check_coco(data: Any, what: str) -> None:
    """Refuses JSON that is not a COCO detection object, in one line."""
    if not isinstance(data, dict):
        raise InputError(f"{what}: expected a COCO object with \"images\" and \"annotations\" lists, "
                         f"got {json_kind(data)}")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise InputError(f"{what}: \"{key}\" is {json_kind(data.get(key))}; expected a list (COCO detection "
                             "format)")


def _category_classes(data: Mapping[str, Any], what: str) -> dict[int, int]:
    """COCO category ids in id order -> classes 0, 1, 2... (from "categories", else from the annotations)."""
    listed = data.get("categories")
    if isinstance(listed, list) and listed:
        ids = [c.get("id") for c in listed if isinstance(c, dict)]
    else:
        ids = [a.get("category_id") for a in data["annotations"] if isinstance(a, dict)]
    numbers = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
    if len(numbers) != len(ids):
        raise InputError(f"{what}: category ids must be integers")
    return {category: index for index, category in enumerate(sorted(set(numbers)))}


def _coco_image(what: str, entry: Mapping[str, Any], annotations: list[Any], mapping: ImageToInput,
                classes: Mapping[int, int]) -> GroundTruth:
    """One COCO image's annotations as ground truth in the input's pixels."""
    name = f"{what}: {entry['file_name']}"
    size = (entry.get("width"), entry.get("height"))
    if all(isinstance(v, int) for v in size) and tuple(size) != tuple(mapping.image_size):
        raise InputError(f"{name}: {size[0]}x{size[1]} in the JSON but the image is "
                         f"{mapping.image_size[0]}x{mapping.image_size[1]}; is this the right image?")
    boxes, labels = [], []
    for ann in annotations:
        if not isinstance(ann, dict) or ann.get("image_id") != entry.get("id") or ann.get("iscrowd", 0):
            continue
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)) or \
                bbox[2] < 0 or bbox[3] < 0:
            raise InputError(f"{name}: annotation {ann.get('id')} has bbox {str(bbox)[:60]}; expected "
                             "[x, y, width, height] with sizes >= 0")
        category = ann.get("category_id")
        if not isinstance(category, int) or category not in classes:
            raise InputError(f"{name}: category {ann.get('category_id')!r} is not one of "
                             f"{sorted(classes)[:10]}; give a category-to-class mapping")
        boxes.append([bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]])
        labels.append(classes[category])
    return _truth_in_input(name, np.reshape(np.array(boxes, np.float64), (-1, 4)), np.array(labels, np.int64),
                           mapping)


def _is_number(value: Any) -> bool:
    """A finite JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_yolo_txt(labels: str | Path | Mapping[str, str], *, images: Mapping[str, ImageToInput],
                  num_classes: int | None = None) -> dict[str, GroundTruth]:
    """True boxes from YOLO label files: one `<image name>.txt` per image, a line per object.

    Each line is `class cx cy w h`, the box's centre and size as shares of the image's width
    and height. An image without a label file has no objects (YOLO's convention for
    background images), but at least one image must have one.

    Args:
        labels: a folder of .txt files, or the files' texts by file name ("astronaut.txt").
        images: each image's name and mapping into the model input.
        num_classes: the model's class count, to refuse a class it does not have.

    Returns:
        Ground truth by image name (every key of `images`).

    Raises:
        InputError: no label file names a given image, a line that is not five numbers, a
            class out of range, a box outside its image.
    """
    texts = _yolo_texts(labels)
    keys = _image_keys(images)
    by_key = {_image_key(name): (name, text) for name, text in texts.items()}
    if not set(by_key) & set(keys):
        raise InputError(f"YOLO labels: none of the {len(texts)} label files names one of the {len(images)} images "
                         f"(e.g. {next(iter(images), 'none')}); expected <image name>.txt")
    truth = {}
    for key, name in keys.items():
        file, text = by_key.get(key, (f"{key}.txt", ""))
        truth[name] = _yolo_image(file, text, images[name], num_classes)
    return truth


def _yolo_texts(labels: str | Path | Mapping[str, str]) -> dict[str, str]:
    """Label texts by file name, from a folder or a mapping."""
    if isinstance(labels, Mapping):
        return {name: text for name, text in labels.items() if name.lower().endswith(".txt")}
    folder = Path(labels)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of YOLO .txt label files")
    return {path.name: read_text(path, what="ground truth") for path in sorted(folder.glob("*.txt"))}


def _yolo_image(file: str, text: str, mapping: ImageToInput, num_classes: int | None) -> GroundTruth:
    """One label file's boxes in the input's pixels."""
    boxes, classes = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{file} line {number}"
        values = _yolo_numbers(fields, where)
        label, cx, cy, w, h = values
        if label != int(label) or label < 0 or (num_classes is not None and label >= num_classes):
            raise InputError(f"{where}: class {fields[0]}; expected an integer from 0 to "
                             f"{'C-1' if num_classes is None else num_classes - 1}")
        if not (min(cx, cy) >= 0 and max(cx, cy) <= 1 and 0 < w <= 1 + 1e-3 and 0 < h <= 1 + 1e-3):
            raise InputError(f"{where}: box {' '.join(fields[1:])}; expected cx cy w h as shares of the image "
                             "in [0, 1]")
        iw, ih = mapping.image_size
        boxes.append([(cx - w / 2) * iw, (cy - h / 2) * ih, (cx + w / 2) * iw, (cy + h / 2) * ih])
        classes.append(int(label))
    return _truth_in_input(file, np.reshape(np.array(boxes, np.float64), (-1, 4)), np.array(classes, np.int64),
                           mapping)


def _yolo_numbers(fields: list[str], where: str) -> list[float]:
    """The five numbers of a YOLO label line."""
    if len(fields) != 5:
        hint = " (a segmentation label?)" if len(fields) > 5 else ""
        raise InputError(f"{where}: {len(fields)} values{hint}; expected 5: class cx cy w h")
    try:
        values = [float(v) for v in fields]
    except ValueError:
        raise InputError(f"{where}: {' '.join(fields)[:60]!r} is not five numbers (class cx cy w h)") from None
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"{where}: not finite numbers")
    return values


