"""gist-onnx: GIST-all-MiniLM-L6-v2 sentence embeddings on ONNX Runtime, without torch.

>>> from gist_onnx import GistEncoder
>>> encoder = GistEncoder()                      # doctest: +SKIP
>>> encoder.encode(["a query", "a passage"]).shape  # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .cache import EmbeddingCache
from .encoder import GistEncoder
from .errors import (
    GistOnnxError,
    InvalidInputError,
    MissingExtraError,
    ModelConfigError,
    ModelFilesError,
    ProviderUnavailableError,
)

if TYPE_CHECKING:
    from .batching import AsyncGistEncoder

__version__ = "0.2.0"

__all__ = [
    "AsyncGistEncoder",
    "EmbeddingCache",
    "GistEncoder",
    "GistOnnxError",
    "InvalidInputError",
    "MissingExtraError",
    "ModelConfigError",
    "ModelFilesError",
    "ProviderUnavailableError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # AsyncGistEncoder imports asyncio, which a process that never awaits should not pay for.
    if name == "AsyncGistEncoder":
        from .batching import AsyncGistEncoder

        return AsyncGistEncoder
    raise AttributeError(f"module 'gist_onnx' has no attribute {name!r}")
