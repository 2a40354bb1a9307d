"""Ground truth for masks (PNGs named like the images) and landmarks (JSON), aligned to the images and the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quant_core.errors import InputError
from quant_core.inputs.ground_truth import load_landmarks, load_masks
from quant_core.inputs.images import ImageItem, ImageSet


def _images(*names_and_sizes: tuple[str, tuple[int, int]]) -> ImageSet:
    """Images of the given names and (height, width); their pixels do not matter here."""
    return ImageSet(tuple(ImageItem(name, np.zeros((h, w, 3), np.uint8)) for name, (h, w) in names_and_sizes))


def _png(path: Path, values: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values, mode).save(path)
    return path


def _left_half(h: int, w: int, value: int = 255) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[:, : w // 2] = value
    return mask


# ----------------------------------------------------------------------------------------------- masks


def test_masks_at_the_image_size_are_resized_nearest_to_the_output_in_the_images_order(tmp_path):
    images = _images(("people/b.jpg", (4, 8)), ("people/a.png", (6, 6)))
    _png(tmp_path / "a.png", np.eye(6, dtype=np.uint8) * 255)  # a diagonal: its 2x2 nearest sample is eye(2)
    _png(tmp_path / "b.png", _left_half(4, 8))
    masks = load_masks([tmp_path], images=images, output_hw=(2, 2))
    assert masks.dtype == np.int64 and masks.tolist() == [[[1, 0], [1, 0]], [[1, 0], [0, 1]]]


def test_a_mask_follows_the_centre_crop_of_its_image(tmp_path):
    values = np.zeros((4, 8), np.uint8)
    values[:, 2:4] = 255  # the left half of the centred square (columns 2 to 5)
    _png(tmp_path / "wide.png", values)
    masks = load_masks([tmp_path / "wide.png"], images=_images(("wide.jpg", (4, 8))), output_hw=(2, 2),
                       center_crop=True)
    assert masks.tolist() == [[[1, 0], [1, 0]]]


def test_a_mask_already_at_the_output_size_is_used_as_is_and_01_masks_read_like_0_255(tmp_path):
    _png(tmp_path / "x.png", np.array([[0, 1, 1], [0, 0, 1]], np.uint8))
    masks = load_masks([tmp_path], images=_images(("x.jpg", (30, 45))), output_hw=(2, 3))
    assert masks.tolist() == [[[0, 1, 1], [0, 0, 1]]]


def test_an_anti_aliased_mask_splits_at_half_the_range(tmp_path):
    _png(tmp_path / "x.png", np.array([[0, 100, 128, 255]], np.uint8))
    assert load_masks([tmp_path], images=_images(("x.jpg", (1, 4))), output_hw=(1, 4)).tolist() == [[[0, 0, 1, 1]]]


def test_a_palette_mask_gives_class_indices_for_a_class_map(tmp_path):
    image = Image.fromarray(np.array([[0, 1], [2, 20]], np.uint8), "P")
    image.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    image.save(tmp_path / "x.png")
    masks = load_masks([tmp_path], images=_images(("x.jpg", (2, 2))), output_hw=(2, 2), classes=21)
    assert masks.tolist() == [[[0, 1], [2, 20]]]


def _refusal(tmp_path: Path, call) -> str:
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_every_bad_mask_is_one_line_naming_the_file(tmp_path):
    one = _images(("people/x.jpg", (4, 4)))
    _png(tmp_path / "class" / "x.png", np.full((4, 4), 21, np.uint8))
    assert _refusal(tmp_path, lambda: load_masks([tmp_path / "class"], images=one, output_hw=(4, 4), classes=21)) == (
        "x.png: holds class 21; the model's output has 21 classes (0 to 20)")
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    _png(tmp_path / "colour" / "x.png", colour)
    assert _refusal(tmp_path, lambda: load_masks([tmp_path / "colour"], images=one, output_hw=(4, 4))) == (
        "x.png: a colour image (RGB); expected a grayscale or palette PNG of labels")
    _png(tmp_path / "size" / "x.png", np.zeros((3, 5), np.uint8))
    assert _refusal(tmp_path, lambda: load_masks([tmp_path / "size"], images=one, output_hw=(2, 2))) == (
        "x.png: 5x3 pixels; expected its image's 4x4 or the model output's 2x2")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert _refusal(tmp_path, lambda: load_masks([tmp_path / "broken"], images=one, output_hw=(2, 2))).startswith(
        "x.png: not a readable PNG mask (")


def test_masks_that_do_not_match_the_images_are_refused_in_one_line(tmp_path):
    two = _images(("a.jpg", (4, 4)), ("b.jpg", (4, 4)))
    _png(tmp_path / "one" / "a.png", np.zeros((4, 4), np.uint8))
    assert _refusal(tmp_path, lambda: load_masks([tmp_path / "one"], images=two, output_hw=(4, 4))) == (
        "masks: no ground truth for 1 of 2 images (b.jpg); expected one per image")
    _png(tmp_path / "stray" / "a.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "stray" / "b.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "stray" / "c.png", np.zeros((4, 4), np.uint8))
    assert _refusal(tmp_path, lambda: load_masks([tmp_path / "stray"], images=two, output_hw=(4, 4))) == (
        "masks: c.png matches no image; expected names like the images' (e.g. a)")
    _png(tmp_path / "twice" / "x" / "a.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "twice" / "y" / "a.png", np.zeros((4, 4), np.uint8))
    message = _refusal(tmp_path, lambda: load_masks([tmp_path / "twice"], images=two, output_hw=(4, 4)))
    assert message.startswith("masks: ") and message.endswith("both name image a")
    same_stem = _images(("cats/a.jpg", (4, 4)), ("dogs/a.png", (4, 4)))
    assert _refusal(tmp_path, lambda: load_masks([tmp_path / "one"], images=same_stem, output_hw=(4, 4))) == (
        "images cats/a.jpg and dogs/a.png share the name a; ground truth is matched by file name, so rename one")


def test_mask_paths_that_are_not_pngs_or_not_there_are_refused(tmp_path):
    one = _images(("a.jpg", (4, 4)))
    (tmp_path / "a.jpg").write_bytes(b"jpeg")
    assert _refusal(tmp_path, lambda: load_masks([tmp_path / "a.jpg"], images=one, output_hw=(4, 4))) == (
        "a.jpg: expected a PNG mask named like its image, e.g. astronaut.png")
    assert _refusal(tmp_path, lambda: load_masks([tmp_path / "nope"], images=one, output_hw=(4, 4))).endswith(
        "nope: no such file or folder")
    (tmp_path / "empty").mkdir()
    assert "no PNG files in" in _refusal(tmp_path, lambda: load_masks([tmp_path / "empty"], images=one,
                                                                      output_hw=(4, 4)))


# ----------------------------------------------------------------------------------------------- landmarks


def _json(tmp_path: Path, data: object, name: str = "points.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_landmarks_map_from_image_pixels_to_input_pixels_in_the_images_order(tmp_path):
    images = _images(("faces/b.jpg", (100, 200)), ("faces/a.png", (50, 50)))
    path = _json(tmp_path, {"a": [[10, 20], [25, 25, 3.5]], "b.jpg": [[200, 100], [0, 0]]})
    points = load_landmarks(path, images=images, input_hw=(10, 10), points=2)
    assert points.tolist() == [[[10.0, 10.0], [0.0, 0.0]], [[2.0, 4.0], [5.0, 5.0]]]  # z is dropped


def test_landmarks_follow_the_centre_crop(tmp_path):
    path = _json(tmp_path, {"wide.jpg": [[50, 0], [150, 100]]})  # the centred square spans x 50 to 150
    points = load_landmarks(path, images=_images(("wide.jpg", (100, 200))), input_hw=(10, 10), points=2,
                            center_crop=True)
    assert points.tolist() == [[[0.0, 0.0], [10.0, 10.0]]]


@pytest.mark.parametrize(("data", "message"), [
    ([1, 2], 'points.json: expected a JSON object {"image name": [[x, y], ...]}, got a list of 2'),
    ({"a.jpg": [[1, 2]]}, "points.json: a.jpg: 1 points; the model predicts 2"),
    ({"a.jpg": [[1, 2], [1, "x"]]}, 'points.json: a.jpg: point 1 is [1, "x"]; expected [x, y] numbers'),
    ({"a.jpg": [[1, 2], [1, 2, 3, 4]]}, "points.json: a.jpg: point 1 is [1, 2, 3, 4]; expected [x, y] numbers"),
    ({"a.jpg": [[1, 2], [True, 2]]}, "points.json: a.jpg: point 1 is [true, 2]; expected [x, y] numbers"),
    ({"a.jpg": {"x": 1}}, "points.json: a.jpg: expected a list of 2 [x, y] points, got an object of 1 key"),
    ({"a.jpg": [[1, 2], [3, 4]], "c.jpg": []}, "points.json: c.jpg matches no image; expected names like the "
                                               "images' (e.g. a)"),
    ({"a.jpg": [[1, 2], [3, 4]], "a": []}, "points.json: 'a.jpg' and 'a' both name image a"),
])
def test_every_bad_landmarks_file_is_one_line_naming_the_file(tmp_path, data, message):
    path = _json(tmp_path, data)
    assert _refusal(tmp_path, lambda: load_landmarks(path, images=_images(("a.jpg", (10, 10))), input_hw=(10, 10),
                                                     points=2)) == message


def test_unreadable_landmarks_files_are_one_line(tmp_path):
    one = _images(("a.jpg", (10, 10)), ("b.jpg", (10, 10)))
    (tmp_path / "bad.json").write_text("{not json")
    assert _refusal(tmp_path, lambda: load_landmarks(tmp_path / "bad.json", images=one, input_hw=(4, 4),
                                                     points=1)).startswith("bad.json: invalid JSON (")
    assert _refusal(tmp_path, lambda: load_landmarks(tmp_path / "none.json", images=one, input_hw=(4, 4),
                                                     points=1)).endswith("none.json: no such file")
    path = _json(tmp_path, {"a.jpg": [[1, 2]]})
    assert _refusal(tmp_path, lambda: load_landmarks(path, images=one, input_hw=(4, 4), points=1)) == (
        "points.json: no ground truth for 1 of 2 images (b.jpg); expected one per image")
