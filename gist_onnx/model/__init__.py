"""Stage 1: the model's files, from a local folder or a hub repo, and what they say.

- :mod:`.layout`: which files make a model, where each variant's graph lies, file modes;
- :mod:`.configs`: the sentence-transformers configs, read into one :class:`ModelConfig`;
- :mod:`.manifest`: the export's record (:class:`Manifest`) and the sha256 check it allows;
- :mod:`.local`: a local folder's files;
- :mod:`.hub`: a hub repo id's files, through the hub's cache.

:func:`resolve` turns what a user passed (a folder, or else a repo id) into :class:`ModelFiles`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelFilesError
from .configs import POOLING_MODES, ModelConfig, read_config
from .hub import GRAPH_COMPANIONS, hub_unreachable, resolve_hub
from .layout import (
    DEFAULT_MODEL,
    GRAPH_FILES,
    MANIFEST_FILE,
    VARIANTS,
    ModelFiles,
    files_read,
    files_to_ship,
    looks_like_path,
    writable_by_others,
)
from .local import resolve_local
from .manifest import IntegrityCheck, Manifest, files_identity, sha256

__all__ = [
    "DEFAULT_MODEL",
    "GRAPH_COMPANIONS",
    "GRAPH_FILES",
    "MANIFEST_FILE",
    "POOLING_MODES",
    "VARIANTS",
    "IntegrityCheck",
    "Manifest",
    "ModelConfig",
    "ModelFiles",
    "files_identity",
    "files_read",
    "files_to_ship",
    "hub_unreachable",
    "looks_like_path",
    "read_config",
    "resolve",
    "sha256",
    "writable_by_others",
]


def resolve(
    model: str | os.PathLike[str],
    variant: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    int8_form: str | None = None,
) -> ModelFiles:
    """Resolve ``model`` (a local folder, or else a hub repo id) to the files the encoder needs;
    for int8, the graph of the form ``int8_form`` (see :mod:`gist_onnx.device`) where there is
    one."""
    if model is None or not isinstance(model, (str, os.PathLike)):
        raise ModelFilesError(
            f"model must be a folder path or a hub repo id (str), got {type(model).__name__}."
        )
    path = Path(model).expanduser()
    if path.is_dir():
        return resolve_local(path, variant, int8_form)
    text = str(model)
    if not isinstance(model, str) or looks_like_path(text):
        raise ModelFilesError(
            f"Model folder {path} does not exist (looked in {path.parent.resolve()}), and "
            f"{text!r} is not a hub repo id (owner/name). Check the path."
        )
    try:
        return resolve_hub(
            text,
            variant,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            int8_form=int8_form,
        )
    except ModelFilesError as exc:
        if "/" in text:
            raise
        # A bare name is a hub id only for a few old repos; more often a folder mistyped.
        raise ModelFilesError(
            f"There is no folder {text!r} in {Path.cwd()}; read as a hub repo id instead: {exc}"
        ) from exc
