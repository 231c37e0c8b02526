"""Unit tier: pooling and normalization on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from gist_onnx.errors import ModelConfigError
from gist_onnx.pooling import l2_normalize, pool

# Two texts, three positions, two dims; the second text's last position is padding.
HIDDEN = np.array(
    [[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[2.0, 0.0], [4.0, 2.0], [100.0, 100.0]]],
    dtype=np.float32,
)
MASK = np.array([[1, 1, 1], [1, 1, 0]], dtype=np.int64)


def test_mean_ignores_padding() -> None:
    np.testing.assert_allclose(pool(HIDDEN, MASK, "mean"), [[3.0, 4.0], [3.0, 1.0]])


def test_cls_takes_first_position() -> None:
    np.testing.assert_allclose(pool(HIDDEN, MASK, "cls"), [[1.0, 2.0], [2.0, 0.0]])


def test_max_ignores_padding() -> None:
    np.testing.assert_allclose(pool(HIDDEN, MASK, "max"), [[5.0, 6.0], [4.0, 2.0]])


def test_mean_sqrt_len() -> None:
    expected = np.array([[9.0, 12.0], [6.0, 2.0]]) / np.sqrt([[3.0], [2.0]])
    np.testing.assert_allclose(pool(HIDDEN, MASK, "mean_sqrt_len"), expected, rtol=1e-6)


def test_all_padding_row_gives_zeros_not_nan() -> None:
    out = pool(HIDDEN, np.zeros_like(MASK), "mean")
    assert np.all(out == 0)


def test_unknown_mode_and_bad_shape_raise() -> None:
    with pytest.raises(ModelConfigError, match="Unknown pooling mode 'weighted'"):
        pool(HIDDEN, MASK, "weighted")
    with pytest.raises(ModelConfigError, match=r"should return \(batch, seq, dim\)"):
        pool(HIDDEN[0], MASK, "mean")


def test_l2_normalize_unit_rows_and_zero_row() -> None:
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32
