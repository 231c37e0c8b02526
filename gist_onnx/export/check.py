"""Export stage 3: check each graph, through the gist-onnx runtime, against the torch reference.

The reference is sentence-transformers loading the very folder that was exported. Every figure
lands in the manifest; a graph that misses its threshold fails the export.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# Worst and mean cosine to the torch vector over the built-in texts, per variant.
THRESHOLDS: dict[str, dict[str, float]] = {
    "fp32": {"worst_cosine": 0.99999, "mean_cosine": 0.99999, "batch_worst_cosine": 0.99999},
    "int8": {"worst_cosine": 0.99, "mean_cosine": 0.998, "batch_worst_cosine": 0.9999},
    "fp16": {"worst_cosine": 0.999, "mean_cosine": 0.9995, "batch_worst_cosine": 0.999},
    # The fp32 graph in bfloat16 (OpenVINO, backend="openvino"): int8's bounds to torch, fp16's
    # across batchings. bf16 keeps 8 bits of mantissa: it was checked only on a CPU without bf16
    # (which computes it in fp32), so it is held to the lower-precision variants' promise.
    "bf16": {"worst_cosine": 0.99, "mean_cosine": 0.998, "batch_worst_cosine": 0.999},
}

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True)
class GraphCheck:
    """How one graph's vectors compare with torch's, and with themselves across batchings."""

    variant: str
    provider: str
    texts: int
    worst_cosine: float
    mean_cosine: float
    worst_text: str
    batch_worst_cosine: float
    batch_max_abs_diff: float
    passed: bool

    def as_dict(self) -> dict[str, Any]:
        """The figures as the manifest stores them."""
        return asdict(self)


def reference_vectors(model_dir: Path, texts: Sequence[str]) -> Vectors:
    """sentence-transformers (torch, fp32, CPU) vectors of ``texts``, as users get them today."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    out = model.encode(list(texts), batch_size=16, convert_to_numpy=True)
    return np.asarray(out, dtype=np.float32)


def cosines(a: Vectors, b: Vectors) -> Vectors:
    """Row-wise cosine similarity of two (n, dim) arrays."""
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    out: Vectors = (num / np.maximum(den, 1e-12)).astype(np.float32)
    return out


def check_graph(
    folder: Path,
    variant: str,
    texts: Sequence[str],
    reference: Vectors,
    *,
    device: str = "cpu",
    backend: str = "onnx",
) -> GraphCheck:
    """Encode ``texts`` with the exported ``variant`` and compare with ``reference``.

    Batch independence: the texts are encoded all in one batch, in batches of 7 and one at a time;
    the worst cosine between any two of those runs is reported with the largest element difference.
    """
    from gist_onnx import GistEncoder

    encoder = GistEncoder(folder, variant=variant, device=device, backend=backend)
    whole = encoder.encode(texts, batch_size=len(texts))
    sevens = encoder.encode(texts, batch_size=7)
    singles = np.stack([encoder.encode_one(t) for t in texts])
    cos = cosines(whole, reference)
    worst = int(np.argmin(cos))
    runs = (whole, sevens, singles)
    batch_cos = min(float(cosines(x, y).min()) for x in runs for y in runs)
    batch_diff = max(float(np.abs(x - y).max()) for x in runs for y in runs)
    limits = THRESHOLDS[variant]
    passed = (
        float(cos.min()) >= limits["worst_cosine"]
        and float(cos.mean()) >= limits["mean_cosine"]
        and batch_cos >= limits["batch_worst_cosine"]
    )
    return GraphCheck(
        variant=variant,
        provider=encoder.provider,
        texts=len(texts),
        worst_cosine=float(cos.min()),
        mean_cosine=float(cos.mean()),
        worst_text=texts[worst][:80],
        batch_worst_cosine=batch_cos,
        batch_max_abs_diff=batch_diff,
        passed=passed,
    )
