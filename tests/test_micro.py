"""Integer-only targets on their own kernels: TFLite Micro (missing ops, measured arena, outputs), reference kernels."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from quant_core import micro
from quant_core.errors import InputError
from quant_core.runner import TFLiteRunner

needs_tflm = pytest.mark.skipif(micro.available() is None,
                                reason="tflite-micro is not installed (pip install tflite-micro)")


@pytest.fixture(scope="module")
def variants(model_files, image_dir, session_cache):
    """The tiny colour classifier's int8, dynamic-range and float32 variants as the workbench builds them; its input."""
    from quant_core.compare import CompareOptions, Workbench
    from quant_core.inputs.images import load_images
    from quant_core.modes import Mode
    from quant_core.recipe import Recipe

    bench = Workbench.open(model_files["keras"], load_images([image_dir]), cache=session_cache,
                           options=CompareOptions(measure_latency=False))
    built = {mode: bench.build(Recipe(mode)).model for mode in (Mode.INT8, Mode.DYNAMIC_RANGE, Mode.FLOAT32)}
    return built[Mode.INT8], built[Mode.DYNAMIC_RANGE], built[Mode.FLOAT32], bench.x


def _int8_net(activation: str) -> tuple[bytes, np.ndarray]:
    """An untrained full-int8 conv net with eight unbounded outputs (values spread over many int8 steps); its input."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation=activation)(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    outputs = keras.layers.Dense(8)(keras.layers.GlobalAveragePooling2D()(x))
    data = np.random.default_rng(0).random((32, 8, 8, 3), dtype=np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([data[i : i + 1]] for i in range(len(data)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert(), data


@pytest.fixture(scope="module")
def relu_int8() -> tuple[bytes, np.ndarray]:
    """A net of ops TFLite Micro has, whose outputs vary (the colour classifier's softmax saturates at 0 and 1)."""
    return _int8_net("relu")


@pytest.fixture(scope="module")
def gelu_int8() -> tuple[bytes, np.ndarray]:
    """The same net with GELU: LiteRT runs it; TFLite Micro has no GELU kernel."""
    return _int8_net("gelu")


def _steps(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...], scale: float) -> float:
    """The largest output difference in quantization steps."""
    return micro.max_difference(a, b) / scale


@needs_tflm
def test_tflm_runs_the_int8_variant_in_the_arena_it_measured_and_agrees_with_xnnpack(variants):
    int8, _, _, x = variants
    run = micro.run_micro(int8, x)
    assert run.ran, run.error
    assert run.missing_ops == () and run.interpreter == f"tflite-micro {micro.available()}"
    assert run.flash_bytes == len(int8)
    # 16x16x3 input, 16-channel activations: two 4 KB int8 buffers live at once, plus TFLM's own structures
    assert run.arena_bytes is not None and 8 * 1024 < run.arena_bytes < 32 * 1024
    xnnpack = TFLiteRunner(int8).predict_all(x)
    assert [o.shape for o in run.outputs] == [o.shape for o in xnnpack] == [(len(x), 3)]
    assert all(o.dtype == np.float32 for o in run.outputs)
    assert run.output_scales == (pytest.approx(1 / 256),)
    assert np.array_equal(run.outputs[0].argmax(1), xnnpack[0].argmax(1))


@needs_tflm
def test_tflm_and_the_reference_kernels_stay_within_one_int8_step_of_xnnpack(relu_int8):
    model, x = relu_int8
    run, xnnpack = micro.run_micro(model, x), TFLiteRunner(model).predict_all(x)
    (scale,) = run.output_scales
    assert np.unique(xnnpack[0]).size >= 50  # outputs spread over many steps: a kernel difference would show
    assert _steps(run.outputs, xnnpack, scale) <= 1.001  # measured: 1 step, on 39 of 256 values
    reference = micro.run_reference(model, x)
    assert _steps(reference, xnnpack, scale) <= 1.001  # measured: 1 step, the same 39 values
    assert _steps(run.outputs, reference, scale) <= 1.001  # measured: 0 (TFLM's kernels compute what LiteRT's do)


@needs_tflm
def test_the_measured_arena_is_the_smallest_that_runs_up_to_alignment(variants, tmp_path):
    """An arena of the recorded size runs the model; 16 bytes less (TFLM aligns to 16) no longer allocates.

    Run in a child process: an arena far too small can crash TFLM (a kernel reads an
    allocation that failed), and a crash must not take the test session with it.
    """
    int8, _, _, x = variants
    arena = micro.run_micro(int8, x[:1]).arena_bytes
    assert arena is not None
    path = tmp_path / "int8.tflite"
    path.write_bytes(int8)
    script = ("import sys, numpy as np\n"
              "from tflite_micro.python.tflite_micro import runtime\n"
              "it = runtime.Interpreter.from_bytes(open(sys.argv[1], 'rb').read(), arena_size=int(sys.argv[2]))\n"
              "it.set_input(np.zeros(it.get_input_details(0)['shape'], np.int8), 0)\n"
              "it.invoke()\n")

    def runs(size: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", script, str(path), str(size)], capture_output=True, text=True,
                              timeout=120, check=False)

    assert runs(arena).returncode == 0
    short = runs(arena - 16)
    assert short.returncode == 1 and "TFLM failed to allocate tensors" in short.stderr


@needs_tflm
def test_activations_larger_than_the_first_arena_grow_it_to_the_measured_size():
    """A float conv with 64 channels at 128x128: a 4 MB activation, more than the first (4 MB) arena TFLM is given."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((128, 128, 3))
    outputs = keras.layers.Conv2D(64, 3, padding="same")(inputs)
    model = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs)).convert()
    x = np.random.default_rng(0).random((1, 128, 128, 3), dtype=np.float32)
    run = micro.run_micro(model, x)
    assert run.ran, run.error
    activations = 128 * 128 * (3 + 64) * 4  # input and output live at once, float32
    assert activations < run.arena_bytes < activations + 64 * 1024
    assert micro.max_difference(run.outputs, TFLiteRunner(model).predict_all(x)) < 1e-5  # measured: 1.5e-7


@needs_tflm
def test_an_op_tflm_lacks_is_named_and_nothing_is_raised(gelu_int8):
    model, data = gelu_int8
    assert TFLiteRunner(model).predict(data).shape == (32, 8)  # LiteRT runs it: the op is real, TFLM lacks it
    run = micro.run_micro(model, data)
    assert run.missing_ops == ("GELU",) and not run.ran
    assert run.error == "TFLite Micro has no kernel for GELU"
    assert run.outputs == () and run.arena_bytes is None and run.flash_bytes == len(model)
    assert micro.fits(run, micro.Budget()) == (
        False, "Does not run on a microcontroller: TFLite Micro has no kernel for GELU.")


@needs_tflm
def test_a_custom_op_is_named_by_its_own_name():
    model = (REPO / "sample_models" / "selfie_segmentation.tflite").read_bytes()
    assert micro.missing_ops(model) == ("Convolution2DTransposeBias",)


@needs_tflm
def test_a_kernel_refusing_hybrid_types_is_named_in_one_line(variants):
    _, dynamic, _, x = variants
    run = micro.run_micro(dynamic, x)
    assert not run.ran and run.missing_ops == () and run.outputs == ()
    assert run.error == ("TFLite Micro could not allocate this model: its CONV_2D kernel refuses node 0 "
                         "(Hybrid models are not supported on TFLite Micro)")


@needs_tflm
def test_images_of_another_shape_give_an_error_not_an_exception(variants):
    int8, _, _, x = variants
    run = micro.run_micro(int8, x[:, :8, :8])
    assert not run.ran and run.error == ("expected images of shape [16, 16, 3] for TFLite Micro "
                                         "(one at a time, batch 1), got [8, 8, 3]")


def test_without_the_package_run_micro_says_how_to_install_it(variants, monkeypatch):
    int8, _, _, x = variants
    monkeypatch.setattr(micro, "available", lambda: None)
    run = micro.run_micro(int8, x)
    assert run == micro.MicroRun(flash_bytes=len(int8),
                                 error="the tflite-micro package is not installed (pip install tflite-micro)")


def test_reference_kernels_give_the_workbench_variants_outputs_close_to_xnnpack(variants):
    int8, _, float32, x = variants
    reference, xnnpack = micro.run_reference(int8, x), TFLiteRunner(int8).predict_all(x)
    assert [o.shape for o in reference] == [(len(x), 3)] and reference[0].dtype == np.float32
    assert _steps(reference, xnnpack, 1 / 256) <= 1  # measured: 0 steps (the classifier's softmax saturates)
    gap = micro.max_difference(micro.run_reference(float32, x), TFLiteRunner(float32).predict_all(x))
    assert 0 < gap < 1e-5  # measured: 1.2e-7, float rounding in another summation order


def test_reference_kernels_refuse_a_model_they_cannot_run_with_one_line():
    model = (REPO / "sample_models" / "selfie_segmentation.tflite").read_bytes()
    with pytest.raises(InputError, match=r"^the reference kernels cannot run this model: "):
        micro.run_reference(model, np.zeros((1, 256, 256, 3), np.float32))


def test_max_difference_is_over_every_output_and_refuses_other_shapes():
    a = (np.zeros((2, 3), np.float32), np.ones((2, 1), np.float32))
    b = (np.full((2, 3), 0.25, np.float32), np.array([[1.0], [0.5]], np.float32))
    assert micro.max_difference(a, b) == 0.5
    with pytest.raises(ValueError, match="same shapes"):
        micro.max_difference(a, (b[0],))


def test_budget_sentences_say_what_fits_and_what_does_not():
    run = micro.MicroRun(flash_bytes=3 * 2**20 + 2**19, arena_bytes=300 * 1024)
    assert micro.fits(run, micro.Budget()) == (
        False, "Does not fit a 512 KB RAM / 2 MB flash microcontroller: the model needs 3.5 MB of flash "
               "(2 MB available).")
    assert micro.fits(run, micro.Budget(ram_bytes=256 * 1024, flash_bytes=4 * 2**20)) == (
        False, "Does not fit a 256 KB RAM / 4 MB flash microcontroller: the tensor arena needs 300 KB of RAM "
               "(256 KB available).")
    assert micro.fits(run, micro.Budget(ram_bytes=2**20, flash_bytes=4 * 2**20)) == (
        True, "Fits a 1 MB RAM / 4 MB flash microcontroller: a 300 KB tensor arena and a 3.5 MB model.")
    assert [b.label for b in micro.COMMON_BUDGETS] == ["256 KB RAM / 1 MB flash", "512 KB RAM / 2 MB flash",
                                                       "1 MB RAM / 2 MB flash"]


@pytest.mark.parametrize("ram", [0, -1, 1.5, True])
def test_a_budget_refuses_sizes_that_are_not_positive_byte_counts(ram):
    with pytest.raises(InputError, match="expected a RAM budget of a positive number of bytes"):
        micro.Budget(ram_bytes=ram)
