"""Stage 4: token vectors to one vector per text (for graphs that return ``last_hidden_state``),
and L2 normalization.

The formulas are sentence-transformers' (``Pooling`` and ``Normalize``), so a plain graph pooled
here gives the vectors sentence-transformers gives.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .errors import ModelConfigError

FloatArray = npt.NDArray[np.float32]


def pool(hidden: FloatArray, attention_mask: npt.NDArray[np.int64], mode: str) -> FloatArray:
    """Pool ``hidden`` (batch, seq, dim) over the tokens where ``attention_mask`` is 1."""
    if hidden.ndim != 3 or attention_mask.shape != hidden.shape[:2]:
        raise ModelConfigError(
            f"Cannot pool token vectors of shape {hidden.shape} with a mask of shape "
            f"{attention_mask.shape}; the graph should return (batch, seq, dim)."
        )
    hidden = hidden.astype(np.float32, copy=False)
    mask = attention_mask.astype(np.float32)[:, :, None]
    if mode == "cls":
        cls: FloatArray = np.ascontiguousarray(hidden[:, 0, :])
        return cls
    if mode == "max":
        # Padded positions can never win: sentence-transformers sets them to -1e9 likewise.
        peak: FloatArray = np.where(mask > 0, hidden, np.float32(-1e9)).max(axis=1)
        return peak
    # Clamp as sentence-transformers does, so an all-padding row gives zeros, not NaN.
    counts = np.maximum(mask.sum(axis=1), np.float32(1e-9))
    summed: FloatArray = np.einsum("bsd,bs->bd", hidden, mask[:, :, 0])
    if mode in ("mean", "mean_sqrt_len"):
        pooled: FloatArray = summed / (counts if mode == "mean" else np.sqrt(counts))
        return pooled
    raise ModelConfigError(f"Unknown pooling mode {mode!r}; use mean, cls, max or mean_sqrt_len.")


def l2_normalize(vectors: FloatArray) -> FloatArray:
    """Scale each row to unit length.

    The epsilon is torch's ``F.normalize`` default (1e-12), which sentence-transformers uses, so a
    zero vector stays zero instead of becoming NaN.
    """
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: FloatArray = (vectors / np.maximum(norms, np.float32(1e-12))).astype(np.float32)
    return unit
