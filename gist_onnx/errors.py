"""The exceptions gist-onnx raises, all rooted at :class:`GistOnnxError`.

::

    GistOnnxError
    ├── ModelFilesError (FileNotFoundError)      a file the model needs is missing
    ├── ModelConfigError (ValueError)            a model file is there but cannot be used
    ├── ProviderUnavailableError (RuntimeError)  the requested execution provider cannot run
    └── InvalidInputError (TypeError, ValueError) what was passed to ``encode`` is not text

Every message says what was looked for and what to do next.
"""

from __future__ import annotations

__all__ = [
    "GistOnnxError",
    "InvalidInputError",
    "ModelConfigError",
    "ModelFilesError",
    "ProviderUnavailableError",
]


class GistOnnxError(Exception):
    """Base class of every error gist-onnx raises on purpose."""


class ModelFilesError(GistOnnxError, FileNotFoundError):
    """A file the model needs could not be found locally or on the hub."""


class ModelConfigError(GistOnnxError, ValueError):
    """A model file exists but describes something gist-onnx cannot run."""


class ProviderUnavailableError(GistOnnxError, RuntimeError):
    """The requested ONNX Runtime execution provider is not available."""


class InvalidInputError(GistOnnxError, TypeError, ValueError):
    """The input to ``encode`` is not a sequence of strings."""
