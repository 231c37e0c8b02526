"""Stage 1: find the model's files (a local folder or a hub repo) and read its configuration.

Everything model-specific (maximum sequence length, pooling, normalization, lower-casing) is read
from the sentence-transformers files of the model folder; nothing of it is hard-coded here.

Where a graph comes from, for a hub repo id:

1. the repo itself, under the names ``gist-onnx``'s export writes (``model.onnx``,
   ``model_int8.onnx``, ``model_fp16.onnx``) and then under ``onnx/`` (the sentence-transformers
   and Optimum layout);
2. for the fp32 graph of a model whose author publishes a separate ONNX repo (the default GIST
   model: ``avsolatorio/GIST-all-MiniLM-L6-v2-onnx``), that repo at a pinned commit. Its graph
   returns ``last_hidden_state`` and is pooled in numpy.

The tokenizer and the sentence-transformers configs always come from the model repo, so the
companion repo's own tokenizer settings never apply.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelConfigError, ModelFilesError

DEFAULT_MODEL = "avsolatorio/GIST-all-MiniLM-L6-v2"

VARIANTS = ("fp32", "int8", "fp16")

# Graph file names looked for, in order, for each variant.
GRAPH_FILES: dict[str, tuple[str, ...]] = {
    "fp32": ("model.onnx", "onnx/model.onnx"),
    "int8": ("model_int8.onnx", "onnx/model_int8.onnx"),
    "fp16": ("model_fp16.onnx", "onnx/model_fp16.onnx"),
}

# Model repos without a graph of their own whose author publishes one elsewhere:
# model repo -> (graph repo, pinned commit, file names).
GRAPH_COMPANIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    DEFAULT_MODEL: (
        "avsolatorio/GIST-all-MiniLM-L6-v2-onnx",
        "76acaf0deea5a0c37507681b3f893ce0eafc8793",
        ("onnx/model.onnx", "model.onnx"),
    ),
}

MANIFEST_FILE = "gist_onnx_manifest.json"

# Files read from the model folder; the pooling folder is named by modules.json.
_CONFIG_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
)

_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}
POOLING_MODES = tuple(_POOLING_KEYS.values())


@dataclass(frozen=True)
class ModelConfig:
    """What the model folder says about how to turn text into one vector."""

    max_seq_length: int
    do_lower_case: bool
    pooling: str
    normalize: bool
    dimension: int | None


@dataclass(frozen=True)
class ModelFiles:
    """The resolved files of one model: its folder, the chosen graph and where it came from."""

    folder: Path
    graph: Path
    variant: str
    source: str


def _read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelConfigError(
            f"Could not read {path}: {exc}. Re-download the model or re-run the export."
        ) from exc


def _pooling_folder(modules: list[dict[str, Any]] | None) -> str | None:
    for module in modules or []:
        if str(module.get("type", "")).endswith("Pooling"):
            return str(module.get("path") or "") or None
    return None


def read_config(folder: Path) -> ModelConfig:
    """Read max length, lower-casing, pooling and normalization from a model folder."""
    modules_path = folder / "modules.json"
    modules = _read_json(modules_path) if modules_path.is_file() else None
    if modules is not None and not isinstance(modules, list):
        raise ModelConfigError(f"{modules_path} should hold a list of modules; re-download it.")
    normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules or [])

    st_path = folder / "sentence_bert_config.json"
    st_config = _read_json(st_path) if st_path.is_file() else {}
    hf_path = folder / "config.json"
    hf_config = _read_json(hf_path) if hf_path.is_file() else {}
    tok_path = folder / "tokenizer_config.json"
    tok_config = _read_json(tok_path) if tok_path.is_file() else {}

    max_len = st_config.get("max_seq_length")
    if max_len is None:
        # sentence-transformers' own fallback: the smaller of the tokenizer's and the model's limit.
        limits = [
            v
            for v in (tok_config.get("model_max_length"), hf_config.get("max_position_embeddings"))
            if isinstance(v, int) and 0 < v < 1_000_000
        ]
        max_len = min(limits) if limits else 512
    if not isinstance(max_len, int) or max_len < 2:
        raise ModelConfigError(
            f"max_seq_length in {st_path} is {max_len!r}; it must be an integer of at least 2."
        )

    pooling = "mean"
    dimension = hf_config.get("hidden_size")
    pool_dir = _pooling_folder(modules)
    if pool_dir is not None:
        pool_path = folder / pool_dir / "config.json"
        if not pool_path.is_file():
            raise ModelFilesError(
                f"modules.json names a pooling module in {pool_dir!r} but {pool_path} is missing; "
                "re-download the model folder."
            )
        pool_config = _read_json(pool_path)
        chosen = [mode for key, mode in _POOLING_KEYS.items() if pool_config.get(key)]
        others = sorted(
            k
            for k, v in pool_config.items()
            if k.startswith("pooling_mode") and v and k not in _POOLING_KEYS
        )
        if len(chosen) != 1 or others:
            raise ModelConfigError(
                f"{pool_path} asks for pooling {chosen + others}; gist-onnx supports exactly one "
                f"of {', '.join(POOLING_MODES)}."
            )
        pooling = chosen[0]
        dimension = pool_config.get("word_embedding_dimension", dimension)
    return ModelConfig(
        max_seq_length=max_len,
        do_lower_case=bool(st_config.get("do_lower_case", False)),
        pooling=pooling,
        normalize=normalize,
        dimension=int(dimension) if isinstance(dimension, int) else None,
    )


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ModelConfigError(f"Unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")


def _export_hint(variant: str) -> str:
    flag = {"int8": " --quantize", "fp16": " --fp16"}.get(variant, "")
    return (
        f"Make one with `python export/to_onnx.py --model <model> --output DIR{flag}` "
        "(needs `pip install 'gist-onnx[export]'`) and pass DIR as the model."
    )


def resolve_local(folder: Path, variant: str) -> ModelFiles:
    """Find the graph of ``variant`` and the tokenizer in a local model folder."""
    _check_variant(variant)
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
            + _export_hint(variant)
        )
    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.txt").is_file():
        raise ModelFilesError(
            f"No tokenizer in {folder}: looked for tokenizer.json and vocab.txt. "
            "Copy the model's tokenizer files next to the graph (the export does this)."
        )
    return ModelFiles(folder=folder, graph=graph, variant=variant, source=str(folder))


def _hub_get(
    repo_id: str,
    filename: str,
    *,
    revision: str | None,
    cache_dir: str | os.PathLike[str] | None,
    local_files_only: bool,
) -> Path | None:
    """Download one file from the hub into its cache; None when the repo does not have it."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=None if cache_dir is None else str(cache_dir),
                local_files_only=local_files_only,
                library_name="gist-onnx",
            )
        )
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return None
    except (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError) as exc:
        raise ModelFilesError(
            f"{repo_id!r} (revision {revision or 'main'}) is neither a local folder nor a hub repo "
            f"gist-onnx can read: {exc.__class__.__name__}. Check the spelling, or pass a folder."
        ) from exc


def resolve_hub(
    repo_id: str,
    variant: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
) -> ModelFiles:
    """Download (or find in the hub cache) the files of ``repo_id`` that the encoder needs.

    ``local_files_only`` and the ``HF_HUB_OFFLINE`` environment variable keep this to the cache.
    """
    _check_variant(variant)
    kwargs: dict[str, Any] = {
        "revision": revision,
        "cache_dir": cache_dir,
        "local_files_only": local_files_only,
    }
    folder: Path | None = None
    fetched: dict[str, Path] = {}
    for name in _CONFIG_FILES:
        path = _hub_get(repo_id, name, **kwargs)
        if path is not None:
            fetched[name] = path
            # Every file of one revision lands in the same snapshot folder of the cache.
            folder = path.parent
    if folder is None or ("tokenizer.json" not in fetched and "vocab.txt" not in fetched):
        where = "the local hub cache" if _offline(local_files_only) else "the hub"
        raise ModelFilesError(
            f"Could not get the tokenizer of {repo_id!r} from {where} (looked for tokenizer.json "
            "and vocab.txt). "
            + (
                "Run once with internet access, unset HF_HUB_OFFLINE, or pass a local folder."
                if _offline(local_files_only)
                else "Check the repo id and your connection, or pass a local folder."
            )
        )
    modules = _read_json(fetched["modules.json"]) if "modules.json" in fetched else None
    pool_dir = _pooling_folder(modules if isinstance(modules, list) else None)
    if pool_dir is not None:
        _hub_get(repo_id, f"{pool_dir}/config.json", **kwargs)

    for name in GRAPH_FILES[variant]:
        graph = _hub_get(repo_id, name, **kwargs)
        if graph is not None:
            # The export keeps the weights beside the graph; the cache puts both in one folder.
            _hub_get(repo_id, f"{name}.data", **kwargs)
            return ModelFiles(
                folder=folder, graph=graph, variant=variant, source=f"{repo_id}/{name}"
            )
    looked = [f"{repo_id}/{n}" for n in GRAPH_FILES[variant]]
    companion = GRAPH_COMPANIONS.get(repo_id)
    if companion is not None and variant == "fp32":
        graph_repo, commit, names = companion
        for name in names:
            graph = _hub_get(
                graph_repo,
                name,
                revision=commit,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
            )
            if graph is not None:
                return ModelFiles(
                    folder=folder, graph=graph, variant=variant, source=f"{graph_repo}/{name}"
                )
        looked += [f"{graph_repo}/{n}" for n in names]
    raise ModelFilesError(
        f"No {variant} graph for {repo_id!r}: looked for {', '.join(looked)}"
        + (" in the local hub cache. " if _offline(local_files_only) else ". ")
        + _export_hint(variant)
    )


def _offline(local_files_only: bool) -> bool:
    if local_files_only:
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def resolve(
    model: str | os.PathLike[str],
    variant: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
) -> ModelFiles:
    """Resolve ``model`` (a local folder, or else a hub repo id) to the files the encoder needs."""
    path = Path(model).expanduser()
    if path.is_dir():
        return resolve_local(path, variant)
    text = str(model)
    if (
        path.is_absolute()
        or text.startswith((".", "~"))
        or text.count("/") > 1
        or (os.sep in text and os.sep != "/")
    ):
        raise ModelFilesError(
            f"Model folder {path} does not exist, and {text!r} is not a hub repo id "
            "(owner/name). Check the path."
        )
    return resolve_hub(
        text,
        variant,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
    )
