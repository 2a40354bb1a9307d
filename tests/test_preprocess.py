"""Tests for quant_core.inputs.preprocess: normalization presets, resizing, cropping, channels and overrides."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from conftest import HAND_WRITTEN
from quant_core.errors import InputError
from quant_core.inputs.preprocess import (ChannelOrder, Normalization, Preprocessing, PreprocessingOverride, Preset,
                                          ResizeMethod, parse_numbers, resize_pixels, to_model_input)

# ----------------------------------------------------------------------------- helpers


def rand_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def checkerboard(side: int, cell: int = 1) -> np.ndarray:
    """An RGB 0/255 checkerboard, side x side pixels, cells of `cell` pixels."""
    yy, xx = np.indices((side, side)) // cell
    board = ((yy + xx) % 2 * 255).astype(np.uint8)
    return np.repeat(board[:, :, None], 3, axis=2)


def raw(height: int, width: int, channels: int = 3, **kwargs) -> Preprocessing:
    """Preprocessing that keeps 0..255 values, so outputs can be compared with pixels."""
    return Preprocessing(height, width, channels, normalization=Normalization.of(Preset.RAW), **kwargs)


# ----------------------------------------------------------------------------- normalization presets

@pytest.mark.parametrize("preset", list(HAND_WRITTEN))
def test_every_preset_gives_the_numbers_of_hand_written_numpy(preset):
    pixels = rand_rgb(6, 5, seed=3)
    pixels[0, 0], pixels[0, 1] = 0, 255  # both ends of the range
    pre = PreprocessingOverride(normalization=preset).apply(Preprocessing(6, 5, 3))
    out = to_model_input([pixels], pre)[0]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, HAND_WRITTEN[preset](pixels.astype(np.float64)), rtol=1e-6, atol=2e-5)
    assert pre.channel_order is (ChannelOrder.BGR if preset == "caffe" else ChannelOrder.RGB)


def test_simple_ranges_are_exactly_the_old_affine_maps():
    """[0,1], [-1,1] and [0,255] keep bit-identical inputs (cached variants stay valid)."""
    pixels = np.arange(256, dtype=np.uint8)[:, None]
    f = pixels.astype(np.float32)
    np.testing.assert_array_equal(Normalization.of("0,1").apply(pixels), f * np.float32(1 / 255))
    np.testing.assert_array_equal(Normalization.of("-1,1").apply(pixels), f * np.float32(2 / 255) + np.float32(-1))
    np.testing.assert_array_equal(Normalization.of("0,255").apply(pixels), f)


def test_custom_mean_std_matches_hand_written_numpy_and_broadcasts_one_value():
    pixels = rand_rgb(4, 4, seed=5)
    norm = Normalization.custom((0.5, 0.25, 0.75), (0.2, 0.4, 0.1))
    expected = (pixels / 255.0 - [0.5, 0.25, 0.75]) / [0.2, 0.4, 0.1]
    np.testing.assert_allclose(norm.apply(pixels), expected, rtol=1e-6, atol=2e-5)
    single = Normalization.custom((0.5,), (0.25,))
    np.testing.assert_allclose(single.apply(pixels), (pixels / 255.0 - 0.5) / 0.25, rtol=1e-6, atol=2e-5)
    assert norm.label == "custom mean 0.5,0.25,0.75, std 0.2,0.4,0.1"


def test_presets_parse_from_strings_and_fit_channels():
    assert [n.preset for n in Normalization.presets(channels=3)] == [
        Preset.ZERO_ONE, Preset.MINUS_ONE_ONE, Preset.RAW, Preset.IMAGENET, Preset.CAFFE]
    assert [n.preset for n in Normalization.presets(channels=1)] == [Preset.ZERO_ONE, Preset.MINUS_ONE_ONE, Preset.RAW]
    assert ResizeMethod("area") is ResizeMethod.AREA
    assert ChannelOrder("bgr") is ChannelOrder.BGR
    with pytest.raises(InputError, match="unknown normalization '0,2'"):
        Normalization.of("0,2")
    with pytest.raises(InputError, match="needs a mean and a std"):
        Normalization.of("custom")
    with pytest.raises(InputError, match="3 channels; the model takes 1"):
        Normalization.of("imagenet").apply(np.zeros((2, 2, 1), np.uint8))


@pytest.mark.parametrize(("mean", "std", "message"), [
    ((0.5,), (0.0,), "positive"), ((0.5, 0.5), (1.0,), "one number or three"),
    ((float("nan"),), (1.0,), "one number or three"), ((0.5,), (-1.0,), "positive")])
def test_invalid_custom_values_are_refused(mean, std, message):
    with pytest.raises(InputError, match=message):
        Normalization.custom(mean, std)


def test_a_preset_cannot_carry_other_numbers():
    with pytest.raises(InputError, match="fixed mean/std"):
        Normalization(Preset.IMAGENET, (0.5,), (0.5,))


def test_numbers_parse_or_fail_with_one_line():
    assert parse_numbers("0.485, 0.456,0.406", name="mean") == (0.485, 0.456, 0.406)
    with pytest.raises(InputError, match="comma-separated numbers"):
        parse_numbers("0.4;0.5", name="mean")


# ----------------------------------------------------------------------------- to_model_input


@pytest.mark.parametrize("channels", [1, 3])
def test_batch_is_float32_nhwc(channels):
    images = [rand_rgb(10, 12, 0), rand_rgb(7, 5, 1), rand_rgb(6, 8, 2)]
    batch = to_model_input(images, Preprocessing(6, 8, channels))
    assert batch.dtype == np.float32
    assert batch.shape == (3, 6, 8, channels)
    assert batch.flags["C_CONTIGUOUS"]
    assert batch.min() >= 0.0 and batch.max() <= 1.0


def test_empty_batch_has_the_model_shape():
    batch = to_model_input([], Preprocessing(4, 5, 1))
    assert batch.shape == (0, 4, 5, 1) and batch.dtype == np.float32


def test_image_already_at_size_is_passed_through_exactly():
    pixels = rand_rgb(5, 7, 3)
    batch = to_model_input([pixels], raw(5, 7))
    np.testing.assert_array_equal(batch[0], pixels.astype(np.float32))
    scaled = to_model_input([pixels], Preprocessing(5, 7, 3, normalization=Normalization.of("-1,1")))
    np.testing.assert_allclose(scaled[0], pixels / 127.5 - 1.0, atol=1e-6)


def test_grayscale_models_get_luma():
    pixels = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [90, 90, 90]]], np.uint8)
    out = to_model_input([pixels], raw(1, 4, channels=1))
    expected = pixels.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert out.shape == (1, 1, 4, 1)
    np.testing.assert_allclose(out[0, 0, :, 0], expected[0], atol=1.0)
    assert out[0, 0, 3, 0] == 90.0  # gray stays the same gray


def test_bgr_reverses_channels_and_rgb_keeps_them():
    pixels = np.broadcast_to(np.array([10, 20, 30], np.uint8), (3, 3, 3)).copy()
    rgb = to_model_input([pixels], raw(3, 3))
    bgr = to_model_input([pixels], raw(3, 3, channel_order=ChannelOrder.BGR))
    np.testing.assert_array_equal(rgb[0, 1, 1], [10, 20, 30])
    np.testing.assert_array_equal(bgr[0, 1, 1], [30, 20, 10])
    np.testing.assert_array_equal(bgr[..., ::-1], rgb)


def test_bgr_does_not_affect_grayscale_models():
    pixels = rand_rgb(4, 4, 5)
    gray_rgb = to_model_input([pixels], raw(4, 4, channels=1))
    gray_bgr = to_model_input([pixels], raw(4, 4, channels=1, channel_order=ChannelOrder.BGR))
    np.testing.assert_array_equal(gray_rgb, gray_bgr)


@pytest.mark.parametrize(("h", "w"), [(4, 10), (10, 4)])
def test_center_crop_keeps_the_centre(h, w):
    pixels = np.zeros((h, w, 3), np.uint8)  # black margins...
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    centre = rand_rgb(side, side, 7) | 1  # ...and a non-black centre square
    pixels[top:top + side, left:left + side] = centre
    cropped = resize_pixels(pixels, raw(side, side, center_crop=True, resize=ResizeMethod.NEAREST))
    np.testing.assert_array_equal(cropped, centre)
    squashed = resize_pixels(pixels, raw(side, side, center_crop=False, resize=ResizeMethod.NEAREST))
    assert (squashed == 0).all(axis=2).any()  # without the crop, the black margins show up


def test_center_crop_then_resize():
    pixels = np.zeros((8, 16, 3), np.uint8)
    pixels[:, 4:12] = 200
    out = to_model_input([pixels], raw(4, 4, center_crop=True, resize=ResizeMethod.BILINEAR))
    assert out.shape == (1, 4, 4, 3)
    assert (out == 200).all()


def test_nearest_and_bilinear_differ_on_a_checkerboard():
    board = checkerboard(8)
    nearest = resize_pixels(board, raw(4, 4, resize=ResizeMethod.NEAREST))
    bilinear = resize_pixels(board, raw(4, 4, resize=ResizeMethod.BILINEAR))
    area = resize_pixels(board, raw(4, 4, resize=ResizeMethod.AREA))
    assert set(np.unique(nearest)) <= {0, 255}
    assert not set(np.unique(bilinear)) <= {0, 255}
    assert np.abs(area.astype(int) - 128).max() <= 1  # box filter averages each 2x2 cell
    assert not np.array_equal(nearest, bilinear)


def test_upscaling_methods_differ():
    board = checkerboard(2)
    outs = {m: resize_pixels(board, raw(8, 8, resize=m)) for m in ResizeMethod}
    assert set(np.unique(outs[ResizeMethod.NEAREST])) == {0, 255}
    assert len(np.unique(outs[ResizeMethod.BILINEAR])) > 2
    assert not np.array_equal(outs[ResizeMethod.BILINEAR], outs[ResizeMethod.BICUBIC])
    for out in outs.values():
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8


def test_resize_keeps_uniform_colour():
    pixels = np.broadcast_to(np.array([12, 200, 99], np.uint8), (9, 13, 3)).copy()
    for method in ResizeMethod:
        out = resize_pixels(pixels, raw(4, 6, resize=method))
        assert out.shape == (4, 6, 3)
        assert (out == [12, 200, 99]).all()


# ----------------------------------------------------------------------------- Preprocessing / overrides


def test_preprocessing_defaults_and_to_dict():
    pre = Preprocessing(224, 224, 3)
    assert (pre.normalization, pre.resize, pre.channel_order, pre.center_crop, pre.source) == (
        Normalization.of("0,1"), ResizeMethod.BILINEAR, ChannelOrder.RGB, False, "default")
    as_dict = pre.to_dict()
    assert as_dict == {"height": 224, "width": 224, "channels": 3,
                       "normalization": {"preset": "0,1", "mean": [0.0], "std": [1.0]}, "resize": "bilinear",
                       "channel_order": "rgb", "center_crop": False, "source": "default"}
    assert json.loads(json.dumps(as_dict)) == as_dict


def test_override_replaces_only_given_fields():
    pre = Preprocessing(32, 32, 3, Normalization.of("-1,1"), ResizeMethod.BICUBIC, ChannelOrder.BGR, True,
                        source="Rescaling layer")
    assert PreprocessingOverride().apply(pre) == pre
    changed = PreprocessingOverride(resize=ResizeMethod.NEAREST).apply(pre)
    assert changed.resize is ResizeMethod.NEAREST
    assert changed == Preprocessing(32, 32, 3, Normalization.of("-1,1"), ResizeMethod.NEAREST, ChannelOrder.BGR,
                                    True, source="Rescaling layer")
    uncropped = PreprocessingOverride(center_crop=False).apply(pre)
    assert uncropped.center_crop is False and uncropped.channel_order is ChannelOrder.BGR
    assert pre.resize is ResizeMethod.BICUBIC  # the original is untouched


def test_override_of_normalization_is_marked_as_chosen_by_the_user():
    pre = Preprocessing(8, 8, 1, source="inferred from the model")
    out = PreprocessingOverride(normalization=Normalization.of(Preset.RAW)).apply(pre)
    assert out.normalization.preset is Preset.RAW
    assert out.source == "chosen by the user"
    assert (out.height, out.width, out.channels, out.resize) == (8, 8, 1, ResizeMethod.BILINEAR)
    assert PreprocessingOverride(channel_order="bgr").apply(pre).source == "inferred from the model"


def test_override_coerces_strings_to_enums():
    override = PreprocessingOverride(normalization="-1,1", resize="nearest", channel_order="bgr", center_crop=True)
    assert override.normalization == Normalization.of(Preset.MINUS_ONE_ONE)
    assert override.resize is ResizeMethod.NEAREST
    assert override.channel_order is ChannelOrder.BGR
    out = override.apply(Preprocessing(4, 4, 3))
    assert (out.normalization.preset, out.resize, out.channel_order, out.center_crop) == (
        Preset.MINUS_ONE_ONE, ResizeMethod.NEAREST, ChannelOrder.BGR, True)
    assert override.to_dict() == {"normalization": {"preset": "-1,1", "mean": [0.5], "std": [0.5]},
                                  "resize": "nearest", "channel_order": "bgr", "center_crop": True}
    assert PreprocessingOverride().to_dict() == dict.fromkeys(("normalization", "resize", "channel_order",
                                                               "center_crop"))


def test_a_chosen_caffe_preset_brings_bgr_unless_an_order_is_chosen_too():
    pre = Preprocessing(4, 4, 3)
    assert PreprocessingOverride(normalization="caffe").apply(pre).channel_order is ChannelOrder.BGR
    rgb = PreprocessingOverride(normalization="caffe", channel_order="rgb")
    assert rgb.apply(pre).channel_order is ChannelOrder.RGB
    bgr = replace(pre, channel_order=ChannelOrder.BGR)
    assert PreprocessingOverride(normalization="imagenet").apply(bgr).channel_order is ChannelOrder.RGB


@pytest.mark.parametrize("norm", [*Normalization.presets(), Normalization.custom((0.1, 0.2, 0.3), (0.9, 0.8, 1 / 3))])
def test_every_normalization_round_trips_through_json(norm):
    from quant_core._serde import from_jsonable, to_jsonable

    override = PreprocessingOverride(normalization=norm)
    assert from_jsonable(PreprocessingOverride, json.loads(json.dumps(to_jsonable(override)))) == override
    pre = override.apply(Preprocessing(8, 8, 3))
    assert from_jsonable(Preprocessing, json.loads(json.dumps(pre.to_dict()))) == pre


def test_override_rejects_unknown_strings():
    with pytest.raises(InputError, match="unknown resize 'lanczos'"):
        PreprocessingOverride(resize="lanczos")
    with pytest.raises(InputError, match="unknown normalization"):
        PreprocessingOverride(normalization="0..1")


def test_override_changes_model_input():
    pixels = rand_rgb(6, 6, 9)
    pre = Preprocessing(6, 6, 3)
    base = to_model_input([pixels], pre)
    flipped = to_model_input([pixels], PreprocessingOverride(normalization="0,255", channel_order="bgr").apply(pre))
    np.testing.assert_allclose(flipped[..., ::-1] / 255.0, base, atol=1e-6)
