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
from pathlib import Path, PurePosixPath
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


@dataclass(frozen=True)
class ModelFiles:
    """The resolved files of one model: its folder, the chosen graph and where it came from."""

    folder: Path
    graph: Path
    variant: str
    source: str
    name: str


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
        if isinstance(module, dict) and str(module.get("type", "")).endswith("Pooling"):
            return str(module.get("path") or "") or None
    return None


def read_config(folder: Path) -> ModelConfig:
    """Read max length, lower-casing, pooling and normalization from a model folder."""
    modules_path = folder / "modules.json"
    modules = _read_json(modules_path) if modules_path.is_file() else None
    if modules is not None and (
        not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules)
    ):
        raise ModelConfigError(
            f'{modules_path} should hold a list of module objects ({{"type": ..., "path": '
            "...}); re-download it."
        )
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
        pooling = chosen[0]
        dimension = pool_config.get(
            "word_embedding_dimension", pool_config.get("embedding_dimension", dimension)
        )
    exported = _exported_config(folder)
    lowercase = tok_config.get("do_lower_case")
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
        exported_pooling=exported.get("pooling")
        if isinstance(exported.get("pooling"), str)
        else None,
        exported_normalize=(
            exported.get("normalize") if isinstance(exported.get("normalize"), bool) else None
        ),
    )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _exported_config(folder: Path) -> dict[str, Any]:
    """The manifest's record of how the export built its graphs (empty without a manifest)."""
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        # No manifest, or one that cannot be read: the integrity check (on by default) refuses
        # the latter; with verify_files=False the graph's own metadata is what counts.
        return {}
    config = manifest.get("config") if isinstance(manifest, dict) else None
    return config if isinstance(config, dict) else {}


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ModelConfigError(f"Unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")


def _export_hint(variant: str) -> str:
    flag = {"int8": " --quantize", "fp16": " --fp16"}.get(variant, "")
    return (
        f"Make one with `gist-onnx export --model <model> --output DIR{flag}` "
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
    files = ModelFiles(
        folder=folder, graph=graph, variant=variant, source=str(folder), name=_local_name(folder)
    )
    check_readable(files)
    return files


def _local_name(folder: Path) -> str:
    """The hub repo id an exported folder came from (its manifest says), else the folder's name."""
    path = folder / MANIFEST_FILE
    if os.access(path, os.R_OK):
        try:
            source = json.loads(path.read_text(encoding="utf-8"))["source"]["model"]
        except (OSError, ValueError, KeyError, TypeError):
            source = None
        if isinstance(source, str) and source and not looks_like_path(source):
            return source
    return folder.resolve().name


def files_read(files: ModelFiles) -> list[Path]:
    """The files of the model that the runtime reads, those that exist: the graph and its
    weights, the tokenizer (``tokenizer.json``, else ``vocab.txt``), the configs, the pooling
    config named by ``modules.json`` and the manifest."""
    graph, folder = files.graph, files.folder
    names = [n for n in _CONFIG_FILES if n != "vocab.txt"]
    if not (folder / "tokenizer.json").exists():
        names.append("vocab.txt")
    names.append(MANIFEST_FILE)
    modules_path = folder / "modules.json"
    if os.access(modules_path, os.R_OK):
        try:
            modules = json.loads(modules_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            modules = None
        pool_dir = _pooling_folder(modules if isinstance(modules, list) else None)
        if pool_dir is not None:
            names.append(f"{pool_dir}/config.json")
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
    import stat

    found = []
    for path in [files.folder, *files_read(files)]:
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if mode & stat.S_IWOTH and not (stat.S_ISDIR(mode) and mode & stat.S_ISVTX):
            found.append(path)
    return found


class IntegrityCheck:
    """Check the files the encoder reads against the sha256 sums of the folder's manifest.

    The export writes every file's sha256 into ``gist_onnx_manifest.json``; a flipped byte in
    the weights otherwise loads without a word and gives vectors unrelated to the right ones.
    :meth:`start` hashes on a thread (hashlib releases the GIL), so the check overlaps with the
    session load instead of adding to the cold start; :meth:`wait` raises what it found.
    Files the manifest lists but the folder lacks (a bundle ships one graph) are skipped; a
    folder without a manifest has nothing to check against.
    """

    def __init__(self, files: ModelFiles) -> None:
        self.files = files
        self.problem: str | None = None
        self._thread: Any = None

    def expected(self) -> list[tuple[Path, str]]:
        """The (file, sha256) pairs to check; raises if the manifest cannot vouch for the graph."""
        folder = self.files.folder
        path = folder / MANIFEST_FILE
        if not path.is_file():
            return []
        manifest = _read_json(path)
        sums = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(sums, dict):
            raise ModelConfigError(
                f"{path} has no 'files' table of sha256 sums; re-run the export, or delete the "
                "manifest to load the folder unchecked."
            )
        try:
            graph = self.files.graph.relative_to(folder).as_posix()
        except ValueError:  # a graph from another repo (the hub's companion graph)
            graph = None
        if graph is not None and graph not in sums:
            raise ModelFilesError(
                f"{self.files.graph} is not among the files {path} vouches for; it was not "
                "written by that export. Re-export the folder, or pass verify_files=False."
            )
        outside = [n for n in sums if not _inside(n)]
        if outside:
            raise ModelFilesError(
                f"{path} lists {outside[0]!r}, a path outside the model folder: a manifest names "
                "the folder's own files only. Re-export the folder, or pass verify_files=False."
            )
        # Every file the encoder reads must be vouched for: a manifest that leaves the weights
        # (or a config) out would let them load unchecked.
        read = [
            p.relative_to(folder).as_posix()
            for p in files_read(self.files)
            if p != path and p.is_relative_to(folder)  # not the hub's companion graph
        ]
        unlisted = [name for name in read if name not in sums]
        if unlisted:
            raise ModelFilesError(
                f"{path} does not vouch for {', '.join(unlisted)}, which the encoder reads: the "
                "manifest was edited or belongs to another export. Re-export the folder, or pass "
                "verify_files=False."
            )
        chosen = {graph, f"{graph}.data"}
        pairs = []
        for name, digest in sums.items():
            if name.endswith((".onnx", ".onnx.data")) and name not in chosen:
                continue  # another variant's graph: not read, and a bundle leaves it out
            if (folder / name).is_file():
                pairs.append((folder / name, str(digest)))
        return pairs

    def start(self) -> IntegrityCheck:
        """Start hashing on a background thread; returns self."""
        import threading

        pairs = self.expected()
        if pairs:
            self._thread = threading.Thread(
                target=self._run, args=(pairs,), name="gist-onnx-verify", daemon=True
            )
            self._thread.start()
        return self

    def _run(self, pairs: list[tuple[Path, str]]) -> None:
        import hashlib

        bad = []
        block = bytearray(1 << 20)
        view = memoryview(block)
        for path, digest in pairs:
            name = path.relative_to(self.files.folder).as_posix()
            sha = hashlib.sha256()
            try:
                with path.open("rb", buffering=0) as handle:
                    while size := handle.readinto(block):
                        sha.update(view[:size])
            except OSError as exc:
                bad.append(f"{name} ({exc.strerror or exc})")
                continue
            if sha.hexdigest() != digest:
                bad.append(name)
        if bad:
            self.problem = (
                f"{', '.join(bad)} in {self.files.folder} "
                f"{'does' if len(bad) == 1 else 'do'} not match the sha256 in {MANIFEST_FILE}: "
                "the file is corrupted or was replaced. Copy or download the folder again, or "
                "re-export it."
            )

    def wait(self) -> None:
        """Wait for the check; raises :class:`ModelFilesError` naming every mismatched file."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.problem is not None:
            raise ModelFilesError(self.problem)


def _inside(name: Any) -> bool:
    """Whether a manifest entry names a file inside the folder: relative, no ``..``."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        return False
    path = PurePosixPath(name)
    parts = path.parts
    return bool(parts) and not path.is_absolute() and ".." not in parts and ":" not in parts[0]


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
    except PermissionError as exc:
        raise ModelFilesError(
            f"Cannot write the Hugging Face cache ({exc.filename or cache_dir or 'HF_HUB_CACHE'}): "
            "permission denied. Point HF_HUB_CACHE (or cache_dir=) at a folder this user can "
            "write, or pass a local model folder."
        ) from exc
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
    offline = _offline_reason(local_files_only)
    if offline is None:
        from huggingface_hub import constants

        problem = hub_unreachable(constants.ENDPOINT)
        if problem is not None:
            # What huggingface_hub itself does on a connection error: serve from the cache.
            try:
                return resolve_hub(
                    repo_id,
                    variant,
                    revision=revision,
                    cache_dir=cache_dir,
                    local_files_only=True,
                )
            except ModelFilesError as exc:
                raise ModelFilesError(
                    f"Cannot reach the Hugging Face hub at {constants.ENDPOINT} ({problem}), "
                    f"and {repo_id!r} is not complete in the local hub cache. Check your "
                    "connection or proxy (HF_ENDPOINT, HTTPS_PROXY), or pass a local model "
                    "folder."
                ) from exc
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
        raise ModelFilesError(
            f"Could not get the tokenizer of {repo_id!r} from "
            + (
                f"the local hub cache, the only place looked since {offline} (looked for "
                "tokenizer.json and vocab.txt). Run once with internet access, or pass a local "
                "folder."
                if offline
                else "the hub (looked for tokenizer.json and vocab.txt). Check the repo id, or "
                "pass a local folder."
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
                folder=folder,
                graph=graph,
                variant=variant,
                source=f"{repo_id}/{name}",
                name=repo_id,
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
                    folder=folder,
                    graph=graph,
                    variant=variant,
                    source=f"{graph_repo}/{name}",
                    name=repo_id,
                )
        looked += [f"{graph_repo}/{n}" for n in names]
    raise ModelFilesError(
        f"No {variant} graph for {repo_id!r}: looked for {', '.join(looked)}"
        + (f" in the local hub cache ({offline}). " if offline else ". ")
        + _export_hint(variant)
    )


def _offline_reason(local_files_only: bool) -> str | None:
    """Why the hub is not asked: what the caller set, in their words; None when it is asked."""
    if local_files_only:
        return "local_files_only=True was passed"
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        name = next(
            (n for n in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if os.environ.get(n)),
            "HF_HUB_OFFLINE",
        )
        return f"{name}={os.environ.get(name, '1')} is set"
    return None


# How long the reachability probe waits for the hub (or the proxy) to accept a connection.
HUB_PROBE_TIMEOUT_S = 5.0


def hub_unreachable(endpoint: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """None when a TCP connection to ``endpoint`` (or the proxy it goes through) opens within
    ``timeout`` seconds, else the reason it did not.

    huggingface_hub retries each file several times with back-off when the hub cannot be reached
    (measured: 6 files, 36 retry lines, 2 min 21 s before the first error). One connection
    attempt up front turns that into one clear error within seconds. Name resolution has no
    timeout of its own, so the attempt runs on a daemon thread that is waited for ``timeout``.
    """
    import socket
    import threading
    import urllib.parse
    import urllib.request

    url = urllib.parse.urlsplit(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parts.hostname or "", parts.port or 8080
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{host}:{port}: {exc.__class__.__name__}: {exc}")

    probe = threading.Thread(target=attempt, name="gist-onnx-hub-probe", daemon=True)
    probe.start()
    probe.join(timeout + 0.5)
    return outcome[0] if outcome else f"{host}:{port}: no answer within {timeout:g} s"


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


def resolve(
    model: str | os.PathLike[str],
    variant: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
) -> ModelFiles:
    """Resolve ``model`` (a local folder, or else a hub repo id) to the files the encoder needs."""
    if model is None or not isinstance(model, (str, os.PathLike)):
        raise ModelFilesError(
            f"model must be a folder path or a hub repo id (str), got {type(model).__name__}."
        )
    path = Path(model).expanduser()
    if path.is_dir():
        return resolve_local(path, variant)
    text = str(model)
    if not isinstance(model, str) or looks_like_path(text):
        raise ModelFilesError(
            f"Model folder {path} does not exist (looked in {path.parent.resolve()}), and "
            f"{text!r} is not a hub repo id (owner/name). Check the path."
        )
    return resolve_hub(
        text,
        variant,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
    )
