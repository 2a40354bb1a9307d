"""Compare's drawings for non-classifiers, pixel by pixel: the photo in the model's frame, a mask over it, the
difference map against float32's mask, and two sets of points (Pillow and numpy only)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from quant_core.inputs.preprocess import Normalization, Preprocessing, ResizeMethod
from quant_core.views import ImageView
from ui import task_views

RED, BLUE = (228, 26, 28), (30, 136, 229)


def pre(height: int, width: int, *, crop: bool = False) -> Preprocessing:
    return Preprocessing(height, width, 3, Normalization.of("0,1"), ResizeMethod.BILINEAR, center_crop=crop)


def halves(width: int = 200, height: int = 100) -> np.ndarray:
    """A photo whose left half is black and right half white."""
    photo = np.zeros((height, width, 3), np.uint8)
    photo[:, width // 2:] = 255
    return photo


def test_the_photo_is_shown_as_the_model_sees_it():
    frame = task_views.model_frame(halves(), pre(128, 256), side=256)
    assert frame.size == (256, 128)  # the input's shape, 256 px on its longer side
    square = task_views.model_frame(halves(), pre(64, 64), side=128)
    assert square.size == (128, 128)  # stretched, as the resize stretches it
    cropped = np.asarray(task_views.model_frame(halves(), pre(64, 64, crop=True), side=128))
    # The centred square of a 200x100 photo is columns 50..150: half black, half white, as without the crop but
    # over a narrower strip; the stretched one keeps the halves too. The crop's edge columns are pure.
    assert cropped[:, :40].max() < 10 and cropped[:, -40:].min() > 245
    assert task_views.model_frame(None, pre(32, 64)).size == (256, 128)  # no photo: a grey frame of the same shape


def test_the_mask_tints_only_its_pixels():
    frame = Image.new("RGB", (64, 64), (100, 100, 100))
    labels = np.zeros((32, 32), np.uint8)
    labels[:, 16:] = 1  # the right half is the person
    drawn = np.asarray(task_views.mask_overlay(frame, labels)).astype(int)
    assert (drawn[:, :32] == 100).all()  # background untouched
    right = drawn[:, 32:]
    assert (right[..., 2] > right[..., 0] + 40).all()  # tinted blue


def test_the_difference_map_is_red_exactly_where_the_labels_differ():
    frame = Image.fromarray(np.full((40, 40, 3), 200, np.uint8))
    reference = np.zeros((20, 20), np.uint8)
    reference[5:15, 5:15] = 1
    got = reference.copy()
    got[5:7, 5:15] = 0  # the variant loses two rows of the mask
    got[0, 0] = 1  # and gains one pixel
    drawn = np.asarray(task_views.difference_map(frame, reference, got))
    red = np.all(drawn == RED, axis=-1)
    expected = np.kron(reference != got, np.ones((2, 2), bool))  # each label pixel is 2x2 on the drawing
    assert (red == expected).all() and red.sum() == 4 * 21
    inside = drawn[20, 20].astype(int)  # float32's mask, unchanged: faded and tinted, not red
    assert inside[2] > inside[0] and not red[20, 20]


def test_points_are_drawn_where_they_are_in_the_models_input():
    frame = Image.new("RGB", (256, 128), "black")
    image = task_views.points_overlay(frame, pre(64, 128), [([(32.0, 16.0)], (0, 255, 0)), ([(96.0, 48.0)],
                                                                                             (255, 0, 0))])
    drawn = np.asarray(image)
    assert tuple(drawn[32, 64]) == (0, 255, 0)  # (32, 16) in a 128x64 input is (64, 32) on the 256x128 drawing
    assert tuple(drawn[96, 192]) == (255, 0, 0)
    assert drawn.reshape(-1, 3).any(axis=1).sum() < 200  # two small dots, nothing else


def test_where_the_points_agree_the_variants_dot_sits_inside_float32s_ring():
    frame = Image.new("RGB", (256, 256), "black")
    drawn = np.asarray(task_views.points_overlay(frame, pre(64, 64), [([(32.0, 32.0)], (0, 255, 0)),
                                                                      ([(32.0, 32.0)], (255, 0, 0))]))
    greens = np.all(drawn == (0, 255, 0), axis=-1).sum()
    reds = np.all(drawn == (255, 0, 0), axis=-1).sum()
    assert tuple(drawn[128, 128]) == (255, 0, 0) and greens > 0 and reds > 0


def test_a_drawn_view_is_a_png_of_the_mask_over_the_photo():
    view = ImageView(mask_png=_mask_png(np.eye(16, dtype=np.uint8)))
    reference = ImageView(mask_png=_mask_png(np.zeros((16, 16), np.uint8)))
    photo = np.full((50, 50, 3), 90, np.uint8)
    kwargs = {"_photo": photo, "_pre": pre(32, 32), "_view": view, "_reference": reference}
    diff = np.asarray(Image.open(io.BytesIO(task_views.drawn("key", "int8", 0, 0, "diff", "50x50x3", **kwargs))))
    assert diff.shape == (256, 256, 3)
    red = np.all(diff == RED, axis=-1)
    assert red[8, 8] and red[-8, -8] and not red[8, -8]  # the diagonal, 16 px thick at this scale
    over = np.asarray(Image.open(io.BytesIO(task_views.drawn("key", "int8", 0, 0, "mask", "50x50x3", **kwargs))))
    assert over[8, 8, 2] > over[8, 8, 0] and tuple(over[8, -8]) == (90, 90, 90)


def _mask_png(labels: np.ndarray) -> str:
    import base64

    buffer = io.BytesIO()
    Image.fromarray(labels * 255).convert("1").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_a_variants_mask_and_its_difference_map_are_one_picture_side_by_side():
    view = ImageView(mask_png=_mask_png(np.eye(16, dtype=np.uint8)))
    reference = ImageView(mask_png=_mask_png(np.zeros((16, 16), np.uint8)))
    kwargs = {"_photo": np.full((50, 50, 3), 90, np.uint8), "_pre": pre(32, 32), "_view": view,
              "_reference": reference}
    both = Image.open(io.BytesIO(task_views.drawn("key", "int8", 0, 0, "mask and diff", "50x50x3", **kwargs)))
    mask = np.asarray(Image.open(io.BytesIO(task_views.drawn("key", "int8", 0, 0, "mask", "50x50x3", **kwargs))))
    diff = np.asarray(Image.open(io.BytesIO(task_views.drawn("key", "int8", 0, 0, "diff", "50x50x3", **kwargs))))
    pixels = np.asarray(both)
    assert both.mode == "RGBA" and pixels.shape == (256, 256 + task_views.GAP + 256, 4)
    assert np.array_equal(pixels[:, :256, :3], mask) and np.array_equal(pixels[:, -256:, :3], diff)
    assert (pixels[:, :256, 3] == 255).all() and (pixels[:, 256:256 + task_views.GAP, 3] == 0).all()
