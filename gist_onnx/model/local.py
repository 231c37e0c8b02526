"""Stage 1, a local folder: its graph of the variant asked for (for int8, of the form asked for),
its tokenizer and its manifest, as :class:`~gist_onnx.model.layout.ModelFiles` (the hub's
counterpart is :mod:`.hub`)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelFilesError
from .layout import (
    DEFAULT_MODEL,
    GRAPH_FILES,
    ModelFiles,
    Parsed,
    check_readable,
    check_variant,
    choose_form,
    export_hint,
    int8_forms,
    looks_like_path,
    parse_once,
)
from .manifest import read_manifest


def resolve_local(folder: Path, variant: str, int8_form: str | None = None) -> ModelFiles:
    """Find the graph of ``variant`` and the tokenizer in a local model folder; for int8, the
    graph of the form ``int8_form`` where the folder has it."""
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
    forms = int8_forms(folder, graph, manifest) if variant == "int8" else {}
    graph, form = choose_form(graph, forms, int8_form)
    files = ModelFiles(
        folder=folder,
        graph=graph,
        variant=variant,
        source=str(folder),
        name=_local_name(folder, manifest),
        modules=parse_once(folder / "modules.json"),
        manifest=manifest,
        int8_forms=forms,
        int8_form=form,
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
