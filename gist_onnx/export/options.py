"""What one export is asked for: :class:`ExportOptions`, which ``gist-onnx export`` (and
``python export/to_onnx.py``) builds from its flags and the export's steps take."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInputError
from ..model import DEFAULT_MODEL

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class ExportOptions:
    """An export: the source ``model`` (a hub repo id or a local sentence-transformers folder)
    at ``revision``, written to ``output`` with the fp32 graph and, when asked, the int8
    (``quantize``), fp16 and ``web`` graphs; the parity check runs on ``device``."""

    output: Path
    model: str = DEFAULT_MODEL
    revision: str | None = None
    quantize: bool = False
    fp16: bool = False
    web: bool = False
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not isinstance(self.output, (str, os.PathLike)):
            raise InvalidInputError(f"output must be a folder path, got {self.output!r}.")
        object.__setattr__(self, "output", Path(self.output))
        if self.device not in DEVICES:
            raise InvalidInputError(
                f"device must be one of {', '.join(DEVICES)}, got {self.device!r}."
            )
