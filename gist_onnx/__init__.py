"""gist-onnx: GIST-all-MiniLM-L6-v2 sentence embeddings on ONNX Runtime, without torch.

>>> from gist_onnx import GistEncoder
>>> encoder = GistEncoder()                      # doctest: +SKIP
>>> encoder.encode(["a query", "a passage"]).shape  # doctest: +SKIP
(2, 384)
"""

from __future__ import annotations

from .encoder import GistEncoder
from .errors import (
    GistOnnxError,
    InvalidInputError,
    MissingExtraError,
    ModelConfigError,
    ModelFilesError,
    ProviderUnavailableError,
)

__version__ = "0.2.0"

__all__ = [
    "GistEncoder",
    "GistOnnxError",
    "InvalidInputError",
    "MissingExtraError",
    "ModelConfigError",
    "ModelFilesError",
    "ProviderUnavailableError",
    "__version__",
]
