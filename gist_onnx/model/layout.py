"""The model folder's layout: which files a model is made of, where each variant's graph lies, and
what this user may read and others may write.

A folder is read here once per load: ``modules.json`` (it names the pooling folder) and the
manifest are parsed when :class:`ModelFiles` is made, and every later stage takes them from it.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelConfigError, ModelFilesError

DEFAULT_MODEL = "avsolatorio/GIST-all-MiniLM-L6-v2"

VARIANTS = ("fp32", "int8", "fp16")

# Graph file names looked for, in order, for each variant.
GRAPH_FILES: dict[str, tuple[str, ...]] = {
    "fp32": ("model.onnx", "onnx/model.onnx"),
    "int8": ("model_int8.onnx", "onnx/model_int8.onnx"),
    "fp16": ("model_fp16.onnx", "onnx/model_fp16.onnx"),
}

MANIFEST_FILE = "gist_onnx_manifest.json"

# Files read from the model folder; the pooling folder is named by modules.json.
CONFIG_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
)


@dataclass(frozen=True)
class Parsed:
    """A JSON file read once: its value (None when the file is absent), or why it could not be
    read, raised by :meth:`get` only where the file matters."""

    value: Any = None
    error: ModelConfigError | None = None

    def get(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def read_json(path: Path) -> Any:
    """A JSON file's value; :class:`ModelConfigError` saying what to do if it cannot be read."""
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelConfigError(
            f"Could not read {path}: {exc}. Re-download the model or re-run the export."
        ) from exc


def parse_once(path: Path) -> Parsed:
    """``path`` read into a :class:`Parsed` (an absent file is a None value, not an error)."""
    if not path.is_file():
        return Parsed()
    try:
        return Parsed(read_json(path))
    except ModelConfigError as exc:
        return Parsed(error=exc)


def pooling_folder(modules: Any) -> str | None:
    """The folder of the pooling module that ``modules.json`` names, if any."""
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith("Pooling"):
            return str(module.get("path") or "") or None
    return None


@dataclass(frozen=True)
class ModelFiles:
    """The resolved files of one model: its folder, the chosen graph and where it came from,
    with the folder's ``modules.json`` and manifest parsed once."""

    folder: Path
    graph: Path
    variant: str
    source: str
    name: str
    modules: Parsed = field(default_factory=Parsed)
    # The folder's Manifest (None without one), or why it could not be read.
    manifest: Parsed = field(default_factory=Parsed)

    @property
    def pooling_folder(self) -> str | None:
        """The pooling module's folder; None when modules.json is absent, unreadable or names
        none (reading the configs says what is wrong with it)."""
        return pooling_folder(self.modules.value)


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ModelConfigError(f"Unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")


def export_hint(variant: str) -> str:
    flag = {"int8": " --quantize", "fp16": " --fp16"}.get(variant, "")
    return (
        f"Make one with `gist-onnx export --model <model> --output DIR{flag}` "
        "(needs `pip install 'gist-onnx[export]'`) and pass DIR as the model."
    )


def looks_like_path(text: str) -> bool:
    """Whether ``text`` names a local path rather than a hub repo id (``owner/name``).

    A path starts with ``.``, ``/`` or ``~``, has more than one ``/`` or a backslash, or starts
    with a folder that exists here (``artifacts/model`` beside an ``artifacts`` folder).
    """
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        return True
    if os.sep != "/" and os.sep in text:
        return True
    head, _, rest = text.partition("/")
    return bool(rest) and Path(head).expanduser().is_dir()


def resolve_local(folder: Path, variant: str) -> ModelFiles:
    """Find the graph of ``variant`` and the tokenizer in a local model folder."""
    from .manifest import read_manifest

    check_variant(variant)
    if not folder.is_dir():
        raise ModelFilesError(
            f"Model folder {folder} does not exist. Pass an existing folder or a hub repo id "
            f"such as {DEFAULT_MODEL!r}."
        )
    for name in GRAPH_FILES[variant]:
        if (folder / name).is_file():
            graph = folder / name
            break
    else:
        raise ModelFilesError(
            f"No {variant} graph in {folder}: looked for {', '.join(GRAPH_FILES[variant])}. "
            + export_hint(variant)
        )
    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.txt").is_file():
        raise ModelFilesError(
            f"No tokenizer in {folder}: looked for tokenizer.json and vocab.txt. "
            "Copy the model's tokenizer files next to the graph (the export does this)."
        )
    manifest = read_manifest(folder)
    files = ModelFiles(
        folder=folder,
        graph=graph,
        variant=variant,
        source=str(folder),
        name=_local_name(folder, manifest),
        modules=parse_once(folder / "modules.json"),
        manifest=manifest,
    )
    check_readable(files)
    return files


def _local_name(folder: Path, manifest: Parsed) -> str:
    """The hub repo id an exported folder came from (its manifest says), else the folder's name."""
    found = manifest.value
    source: str | None = found.source_model if found is not None else None
    if source and not looks_like_path(source):
        return source
    return folder.resolve().name


def files_read(files: ModelFiles) -> list[Path]:
    """The files of the model that the runtime reads, those that exist: the graph and its
    weights, the tokenizer (``tokenizer.json``, else ``vocab.txt``), the configs, the pooling
    config named by ``modules.json`` and the manifest."""
    graph, folder = files.graph, files.folder
    names = [n for n in CONFIG_FILES if n != "vocab.txt"]
    if not (folder / "tokenizer.json").exists():
        names.append("vocab.txt")
    names.append(MANIFEST_FILE)
    if files.pooling_folder is not None:
        names.append(f"{files.pooling_folder}/config.json")
    paths = [graph, graph.with_name(graph.name + ".data"), *(folder / n for n in names)]
    return [p for p in paths if p.exists()]


def check_readable(files: ModelFiles) -> None:
    """Refuse files that exist but that this user may not read, naming them and the fix.

    ONNX Runtime reports an unreadable weights file as ``SystemError : 13``, which reads like a
    corrupt graph; the real cause is usually a folder written by another user (root in a
    container build) with owner-only modes.
    """
    denied = [p for p in files_read(files) if not os.access(p, os.R_OK)]
    if denied:
        modes = ", ".join(f"{p} (mode {p.stat().st_mode & 0o777:04o})" for p in denied)
        raise ModelFilesError(
            f"Permission denied: this user (uid {os.getuid() if hasattr(os, 'getuid') else '?'}) "
            f"cannot read {modes}. Make the model folder readable to every user: "
            f"chmod -R a+rX {files.folder}"
        )


def writable_by_others(files: ModelFiles) -> list[Path]:
    """The model's folder and files that any user of the machine may write (mode o+w): anyone
    could then replace the weights. A folder with the sticky bit (like /tmp) is not counted:
    there, others cannot replace this user's files."""
    found = []
    for path in [files.folder, *files_read(files)]:
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if mode & stat.S_IWOTH and not (stat.S_ISDIR(mode) and mode & stat.S_ISVTX):
            found.append(path)
    return found
