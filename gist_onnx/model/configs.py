"""The sentence-transformers configs of a model folder, read into one :class:`ModelConfig`.

Everything model-specific (maximum sequence length, pooling, normalization, lower-casing) is read
from the folder's files; nothing of it is hard-coded here. Each file is parsed once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelConfigError, ModelFilesError
from .layout import MANIFEST_FILE, ModelFiles, Parsed, parse_once, pooling_folder, read_json
from .manifest import Manifest, read_manifest

_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}
POOLING_MODES = tuple(_POOLING_KEYS.values())
# sentence-transformers 6 writes one key instead: "pooling_mode", a name or a list of names.
_POOLING_NAMES = {
    "mean": "mean",
    "cls": "cls",
    "max": "max",
    "mean_sqrt_len_tokens": "mean_sqrt_len",
}


@dataclass(frozen=True)
class ModelConfig:
    """What the model folder says about how to turn text into one vector."""

    max_seq_length: int
    do_lower_case: bool
    pooling: str
    normalize: bool
    dimension: int | None
    # What the tokenizer has to fit (config.json, tokenizer_config.json); None where not said.
    vocab_size: int | None = None
    pad_token_id: int | None = None
    tokenizer_lowercase: bool | None = None
    special_tokens: tuple[str, ...] = ()
    # How the export built a graph that pools inside (gist_onnx_manifest.json), if it did.
    exported_pooling: str | None = None
    exported_normalize: bool | None = None
    # tokenizer_config.json as read: what a tokenizer built from vocab.txt is configured by.
    tokenizer_config: dict[str, Any] = field(default_factory=dict, compare=False)
    # config_sentence_transformers.json's prompts (name -> text put before each text) and the
    # one applied by default; sentence-transformers adds empty "query" and "document" prompts.
    prompts: dict[str, str] = field(default_factory=dict, compare=False)
    default_prompt_name: str | None = None


def read_config(
    folder: Path, *, modules: Parsed | None = None, manifest: Parsed | None = None
) -> ModelConfig:
    """Read max length, lower-casing, pooling and normalization from a model folder.

    ``modules`` and ``manifest`` are those already read with the folder's
    :class:`~gist_onnx.model.ModelFiles`; without them, they are read here. A manifest that
    cannot be read counts as none (the integrity check is what refuses it).
    """
    exported: Manifest | None = (manifest or read_manifest(folder)).value
    modules_path = folder / "modules.json"
    modules_list = (modules or parse_once(modules_path)).get()
    if modules_list is not None and (
        not isinstance(modules_list, list) or not all(isinstance(m, dict) for m in modules_list)
    ):
        raise ModelConfigError(
            f'{modules_path} should hold a list of module objects ({{"type": ..., "path": '
            "...}); re-download it."
        )
    normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules_list or [])
    st_path = folder / "sentence_bert_config.json"
    st_config = _object(st_path)
    hf_path = folder / "config.json"
    hf_config = _object(hf_path)
    tok_config = _object(folder / "tokenizer_config.json")
    max_len = _max_seq_length(st_config, hf_config, tok_config, st_path, hf_path)
    pooling, dimension = "mean", hf_config.get("hidden_size")
    pool_dir = pooling_folder(modules_list)
    if pool_dir is not None:
        pooling, dimension = _pooling(folder, pool_dir, dimension)
    lowercase = tok_config.get("do_lower_case")
    prompts, default_prompt = _prompts(folder / "config_sentence_transformers.json")
    return ModelConfig(
        max_seq_length=max_len,
        do_lower_case=bool(st_config.get("do_lower_case", False)),
        pooling=pooling,
        normalize=normalize,
        dimension=int(dimension) if isinstance(dimension, int) else None,
        vocab_size=_int_or_none(hf_config.get("vocab_size")),
        pad_token_id=_int_or_none(hf_config.get("pad_token_id")),
        tokenizer_lowercase=lowercase if isinstance(lowercase, bool) else None,
        special_tokens=tuple(
            str(tok_config[k])
            for k in ("cls_token", "sep_token", "pad_token", "unk_token")
            if isinstance(tok_config.get(k), str)
        ),
        exported_pooling=exported.pooling if exported is not None else None,
        exported_normalize=exported.normalize if exported is not None else None,
        tokenizer_config=tok_config,
        prompts=prompts,
        default_prompt_name=default_prompt,
    )


def _prompts(path: Path) -> tuple[dict[str, str], str | None]:
    """The prompts and default prompt name of config_sentence_transformers.json, with
    sentence-transformers' empty "query" and "document" prompts where it names none."""
    config = _object(path)
    named = config.get("prompts") or {}
    if not isinstance(named, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in named.items()
    ):
        raise ModelConfigError(f"'prompts' in {path} must map prompt names to strings.")
    prompts = {"query": "", "document": "", **named}
    default = config.get("default_prompt_name")
    if default is not None and default not in prompts:
        raise ModelConfigError(
            f"default_prompt_name in {path} is {default!r}, not one of its prompts "
            f"{sorted(prompts)}."
        )
    return prompts, default


def _object(path: Path) -> dict[str, Any]:
    """A config file's JSON object; empty when the file is absent."""
    return read_json(path) if path.is_file() else {}


def _max_seq_length(
    st_config: dict[str, Any],
    hf_config: dict[str, Any],
    tok_config: dict[str, Any],
    st_path: Path,
    hf_path: Path,
) -> int:
    max_len = st_config.get("max_seq_length")
    if max_len is None:
        # sentence-transformers' own fallback: the smaller of the tokenizer's and the model's limit.
        limits = [
            v
            for v in (tok_config.get("model_max_length"), hf_config.get("max_position_embeddings"))
            if isinstance(v, int) and 0 < v < 1_000_000
        ]
        max_len = min(limits) if limits else 512
    if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 2:
        raise ModelConfigError(
            f"max_seq_length in {st_path} is {max_len!r}; it must be an integer of at least 2."
        )
    positions = hf_config.get("max_position_embeddings")
    if isinstance(positions, int) and max_len > positions:
        raise ModelConfigError(
            f"max_seq_length in {st_path} is {max_len}, but the model has position embeddings "
            f"for {positions} tokens ({hf_path}): longer texts would fail inside the graph. Set "
            f"max_seq_length to {positions} or less."
        )
    return max_len


def _pooling(folder: Path, pool_dir: str, dimension: Any) -> tuple[str, Any]:
    """The pooling mode the pooling module's config asks for, and the dimension it states."""
    pool_path = folder / pool_dir / "config.json"
    if not pool_path.is_file():
        raise ModelFilesError(
            f"modules.json names a pooling module in {pool_dir!r} but {pool_path} is missing; "
            "re-download the model folder."
        )
    pool_config = read_json(pool_path)
    named = pool_config.get("pooling_mode")
    if named is not None:  # sentence-transformers 6
        names = named if isinstance(named, list) else [named]
        chosen = [_POOLING_NAMES[str(n)] for n in names if str(n) in _POOLING_NAMES]
        others = [str(n) for n in names if str(n) not in _POOLING_NAMES]
    else:
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
    dimension = pool_config.get(
        "word_embedding_dimension", pool_config.get("embedding_dimension", dimension)
    )
    return chosen[0], dimension


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_graph_pooling(
    config: ModelConfig, files: ModelFiles, pooling: str | None, normalize: bool | None
) -> bool:
    """A graph that pools inside does what the export built it to do: refuse configs that ask
    for something else (they would be reported, and silently not done). The graph's ONNX
    metadata says how it pools; a graph exported before it did falls back on the manifest.
    Returns False, with a warning, when neither records it (nothing to check against).

    ``pooling`` and ``normalize`` are what the graph's metadata records (None where it does not).
    """
    asked = (config.pooling, config.normalize)
    if pooling is not None and normalize is not None:
        built, record = (pooling, normalize), "its ONNX metadata"
    elif config.exported_pooling is not None and config.exported_normalize is not None:
        built = (config.exported_pooling, config.exported_normalize)
        record = MANIFEST_FILE
    else:
        warnings.warn(
            f"{files.graph} pools inside, but neither its ONNX metadata nor a {MANIFEST_FILE} "
            f"records how: gist-onnx cannot check that it pools by {asked[0]} as the folder's "
            "configs say. Export the model with `gist-onnx export` to have it checked.",
            UserWarning,
            stacklevel=4,  # the caller of GistEncoder()
        )
        return False
    if built == asked:
        return True
    if not (files.folder / "modules.json").is_file():
        raise ModelConfigError(
            f"{files.folder} has no modules.json, which says whether the model normalizes its "
            f"vectors ({files.graph} pools by {built[0]} "
            f"{'and' if built[1] else 'without'} normalizing, per {record}). Copy modules.json "
            "from the model (the export writes it)."
        )
    raise ModelConfigError(
        f"{files.graph} pools by {built[0]} {'and' if built[1] else 'without'} normalizing inside "
        f"({record}), but the folder's configs ask for {asked[0]} pooling "
        f"{'and' if asked[1] else 'without'} normalizing (1_Pooling/config.json, "
        "modules.json). Re-export the folder with the configs you want."
    )
