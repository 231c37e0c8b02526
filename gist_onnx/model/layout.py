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

# bf16 is the fp32 graph computed in bfloat16 by OpenVINO (backend="openvino").
VARIANTS = ("fp32", "int8", "fp16", "bf16")

# Graph file names looked for, in order, for each variant.
GRAPH_FILES: dict[str, tuple[str, ...]] = {
    "fp32": ("model.onnx", "onnx/model.onnx"),
    "int8": ("model_int8.onnx", "onnx/model_int8.onnx"),
    "fp16": ("model_fp16.onnx", "onnx/model_fp16.onnx"),
    "bf16": ("model.onnx", "onnx/model.onnx"),
}

MANIFEST_FILE = "gist_onnx_manifest.json"


def exported_graph(variant: str) -> str:
    """The name the export writes ``variant``'s graph under (the first one looked for)."""
    return GRAPH_FILES[variant][0]


# The int8 graph comes in two forms (see gist_onnx.device: which runs where): ``model_int8.onnx``
# with u8 x u8 products, exact on every CPU and complete with its ``.data``, and beside it
# ``model_int8_u8s8.onnx`` with u8 x s8 products, whose own ``.data`` holds only its int8 weights
# and which reads every other tensor from ``model_int8.onnx.data``.
U8S8_SUFFIX = "_u8s8"


def u8s8_graph(graph: Path) -> Path:
    """The u8 x s8 form beside an int8 graph (which may not exist)."""
    return graph.with_name(f"{graph.stem}{U8S8_SUFFIX}{graph.suffix}")


def graph_files(graph: Path) -> list[Path]:
    """A graph and the weights files it reads, whether or not they exist: its own ``.data``, and
    for a u8 x s8 form the ``.data`` of the graph it was made from."""
    paths = [graph, graph.with_name(graph.name + ".data")]
    if graph.stem.endswith(U8S8_SUFFIX):
        base = graph.with_name(graph.stem[: -len(U8S8_SUFFIX)] + graph.suffix)
        paths.append(base.with_name(base.name + ".data"))
    return paths


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
    # The int8 graph's forms in the folder (form -> graph), and the form of ``graph`` where the
    # export recorded it (None: not int8, or a graph of unknown form).
    int8_forms: dict[str, Path] = field(default_factory=dict)
    int8_form: str | None = None

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


def int8_forms(folder: Path, graph: Path, manifest: Parsed) -> dict[str, Path]:
    """The forms of the int8 graph ``graph`` present beside it: what the export's manifest
    records (``graphs.int8.forms``); a manifest from before the forms, or none, records nothing,
    and then the u8 x s8 file alone is known by its name."""
    found = manifest.value if manifest.error is None else None
    entry = getattr(found, "graphs", {}).get("int8") if found is not None else None
    recorded = entry.get("forms") if isinstance(entry, dict) else None
    forms: dict[str, Path] = {}
    if isinstance(recorded, dict):
        for form, item in recorded.items():
            name = item.get("file") if isinstance(item, dict) else None
            if isinstance(name, str) and (folder / name).is_file():
                forms[str(form)] = folder / name
        return forms
    if u8s8_graph(graph).is_file():
        forms["u8s8"] = u8s8_graph(graph)
    return forms


def choose_form(graph: Path, forms: dict[str, Path], wanted: str | None) -> tuple[Path, str | None]:
    """The graph to load for the int8 form ``wanted`` (None: the graph as found), and its form
    where known: the folder's graph of that form, else ``graph`` itself."""
    if wanted is not None and wanted in forms:
        return forms[wanted], wanted
    known = next((form for form, path in forms.items() if path == graph), None)
    return graph, known


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
    paths = [*graph_files(graph), *(folder / n for n in names)]
    return [p for p in paths if p.exists()]


def files_to_ship(files: ModelFiles) -> list[Path]:
    """What a deployment of this model has to carry: :func:`files_read`, and the int8 graph's
    other forms, since the machine it lands on may choose another (a bundle cannot know which
    CPU runs it)."""
    paths = files_read(files)
    for graph in files.int8_forms.values():
        paths += [p for p in graph_files(graph) if p.exists() and p not in paths]
    return paths


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
