"""The exceptions gist-onnx raises, all rooted at :class:`GistOnnxError`.

::

    GistOnnxError
    ├── ModelFilesError (FileNotFoundError)      a file the model needs is missing
    ├── ModelConfigError (ValueError)            a model file is there but cannot be used
    ├── ProviderUnavailableError (RuntimeError)  the requested execution provider cannot run
    ├── InvalidInputError (TypeError, ValueError) what was passed to ``encode`` is not text
    │   ├── wire.RequestError                    an HTTP request that cannot be served (status)
    │   └── embed.BadRow                         a row of an input file, with its line
    ├── embed.FileError (OSError)                an input or output file cannot be read or written
    ├── MissingExtraError (ImportError)          a feature's extra is not installed
    ├── serverless.bundle.BundleError (RuntimeError) a Lambda bundle cannot be built
    ├── export.to_onnx.UsageError (ValueError)   the export was called wrongly
    ├── serve.batching.QueueFull (RuntimeError)  the server's queue is full (answered 429)
    └── serve.handlers.ClientGone (ConnectionError)   the client left before its answer (logged 499)

The first five are public (``gist_onnx.__all__``); the others belong to the layer named.
Every message says what was looked for and what to do next.
"""

from __future__ import annotations

__all__ = [
    "GistOnnxError",
    "InvalidInputError",
    "MissingExtraError",
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


class MissingExtraError(GistOnnxError, ImportError):
    """A feature needs packages of an extra that is not installed; the message names the
    ``pip install 'gist-onnx[extra]'`` line."""

    def __init__(self, feature: str, extra: str, missing: str) -> None:
        super().__init__(
            f"{feature} needs {missing}, which is not installed: pip install 'gist-onnx[{extra}]'"
        )
        self.extra = extra
