"""The torch-free checkpoint reader cuts strided tensors (a transposed weight, as TF-converted checkpoints hold) out of
their storage as their values, and refuses one that would read past its storage."""

from __future__ import annotations

import numpy as np
import pytest

from sample_models.build_imagenet_sample import SampleBuildError, _materialize, _TensorRef


def test_a_transposed_tensor_is_read_as_its_values():
    storage = np.arange(24, dtype=np.float32)
    ref = _TensorRef("0", 4, (3, 2, 2), (1, 6, 3))  # a [2, 2, 3] block from offset 4, stored last axis first
    got = _materialize(ref, {"0": storage})
    assert got.flags.c_contiguous and got.flags.writeable
    np.testing.assert_array_equal(got, storage[4:16].reshape(2, 2, 3).transpose(2, 0, 1))


def test_a_contiguous_tensor_and_a_scalar_read_as_before():
    storage = np.arange(10, dtype=np.int64)
    np.testing.assert_array_equal(_materialize(_TensorRef("0", 2, (2, 3), (3, 1)), {"0": storage}),
                                  np.arange(2, 8).reshape(2, 3))
    assert _materialize(_TensorRef("0", 9, (), ()), {"0": storage}) == 9


def test_a_tensor_reaching_past_its_storage_is_refused():
    with pytest.raises(SampleBuildError, match="outside its storage"):
        _materialize(_TensorRef("0", 2, (3, 3), (1, 3)), {"0": np.zeros(9, np.float32)})
