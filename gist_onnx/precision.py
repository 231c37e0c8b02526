"""Output quantization as sentence-transformers defines it (``encode(..., precision=...)``).

- ``float32``: the vectors as they are;
- ``int8`` / ``uint8``: each dimension mapped linearly onto 256 levels, between that dimension's
  minimum and maximum over ``ranges`` (a (2, dim) array of minima and maxima, e.g. from a
  calibration set) or, without it, over the embeddings themselves, as sentence-transformers
  does (so the result then depends on what was encoded together: pass ranges for stable codes);
- ``binary`` / ``ubinary``: one bit per dimension (positive or not), packed eight to a byte:
  ``ubinary`` as uint8, ``binary`` as int8 (the uint8 value less 128). Shape (n, dim / 8).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .errors import InvalidInputError

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


def quantize_embeddings(
    embeddings: npt.NDArray[np.float32],
    precision: str,
    ranges: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.generic]:
    """``embeddings`` (n, dim) at ``precision``; see the module docstring."""
    if precision not in PRECISIONS:
        raise InvalidInputError(
            f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}."
        )
    if precision == "float32":
        return embeddings
    if precision in ("binary", "ubinary"):
        packed = np.packbits(embeddings > 0, axis=-1)
        return (packed.astype(np.int16) - 128).astype(np.int8) if precision == "binary" else packed
    if ranges is None:
        if len(embeddings) == 0:
            return np.zeros(embeddings.shape, dtype=np.int8 if precision == "int8" else np.uint8)
        if len(embeddings) == 1:
            raise InvalidInputError(
                f"{precision} codes cannot be ranged on a single embedding; encode in float32 and "
                "call gist_onnx.precision.quantize_embeddings(vectors, precision, ranges) with "
                "ranges from a representative set (a row of minima, a row of maxima)."
            )
        ranges = np.vstack((embeddings.min(axis=0), embeddings.max(axis=0)))
    ranges = np.asarray(ranges, dtype=np.float32)
    if ranges.shape != (2, embeddings.shape[1]):
        raise InvalidInputError(
            f"ranges must have shape (2, {embeddings.shape[1]}): a row of minima and one of "
            f"maxima per dimension; got {ranges.shape}."
        )
    starts = ranges[0]
    steps = (ranges[1] - ranges[0]) / 255
    steps = np.where(steps > 0, steps, np.float32(1))  # a constant dimension maps to 0
    levels = np.clip(np.floor((embeddings - starts) / steps), 0, 255)
    codes: npt.NDArray[np.generic] = (
        levels.astype(np.uint8) if precision == "uint8" else (levels - 128).astype(np.int8)
    )
    return codes
