"""The Hugging Face hub: a repo id's files downloaded into (or found in) the hub's cache.

Where a graph comes from, for a hub repo id:

1. the repo itself, under the names ``gist-onnx``'s export writes (``model.onnx``,
   ``model_int8.onnx``, ``model_fp16.onnx``) and then under ``onnx/`` (the sentence-transformers
   and Optimum layout);
2. for the fp32 graph of a model whose author publishes a separate ONNX repo (the default GIST
   model: ``avsolatorio/GIST-all-MiniLM-L6-v2-onnx``), that repo at a pinned commit. Its graph
   returns ``last_hidden_state`` and is pooled in numpy.

The tokenizer and the sentence-transformers configs always come from the model repo, so the
companion repo's own tokenizer settings never apply. ``huggingface_hub`` is imported only here,
and only when a repo id is asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ModelFilesError
from .layout import (
    CONFIG_FILES,
    DEFAULT_MODEL,
    GRAPH_FILES,
    ModelFiles,
    check_variant,
    choose_form,
    export_hint,
    int8_forms,
    parse_once,
    pooling_folder,
    u8s8_graph,
)
from .manifest import read_manifest

# Model repos without a graph of their own whose author publishes one elsewhere:
# model repo -> (graph repo, pinned commit, file names).
GRAPH_COMPANIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    DEFAULT_MODEL: (
        "avsolatorio/GIST-all-MiniLM-L6-v2-onnx",
        "76acaf0deea5a0c37507681b3f893ce0eafc8793",
        ("onnx/model.onnx", "model.onnx"),
    ),
}


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
    int8_form: str | None = None,
) -> ModelFiles:
    """Download (or find in the hub cache) the files of ``repo_id`` that the encoder needs: for
    int8, the graph of the form ``int8_form`` where the repo has it.

    ``local_files_only`` and the ``HF_HUB_OFFLINE`` environment variable keep this to the cache.
    """
    check_variant(variant)
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
                    int8_form=int8_form,
                )
            except ModelFilesError as exc:
                raise ModelFilesError(
                    f"Cannot reach the Hugging Face hub at {constants.ENDPOINT} ({problem}), "
                    f"and {repo_id!r} is not complete in the local hub cache. Check your "
                    "connection or proxy (HF_ENDPOINT, HTTPS_PROXY), or pass a local model "
                    "folder (`gist-onnx export --model DIR --output FOLDER` writes one from any "
                    "sentence-transformers folder)."
                ) from exc
    kwargs: dict[str, Any] = {
        "revision": revision,
        "cache_dir": cache_dir,
        "local_files_only": local_files_only,
    }
    folder = _fetch_configs(repo_id, offline, kwargs)
    # Parsed once here and carried with the files (the configs are read from the same folder).
    modules = parse_once(folder / "modules.json")
    pool_dir = pooling_folder(modules.value)
    if pool_dir is not None:
        _hub_get(repo_id, f"{pool_dir}/config.json", **kwargs)
    graph, source = _fetch_graph(repo_id, variant, offline, kwargs)
    manifest = read_manifest(folder)
    forms: dict[str, Path] = {}
    form = None
    if variant == "int8":
        if int8_form == "u8s8":
            # The u8 x s8 form reads the base graph's weights too: fetched above.
            name = u8s8_graph(Path(source.removeprefix(f"{repo_id}/"))).as_posix()
            if _hub_get(repo_id, name, **kwargs) is not None:
                _hub_get(repo_id, f"{name}.data", **kwargs)
        forms = int8_forms(folder, graph, manifest)
        chosen, form = choose_form(graph, forms, int8_form)
        if chosen != graph:
            source = f"{repo_id}/{chosen.relative_to(folder).as_posix()}"
            graph = chosen
    return ModelFiles(
        folder=folder,
        graph=graph,
        variant=variant,
        source=source,
        name=repo_id,
        modules=modules,
        manifest=manifest,
        int8_forms=forms,
        int8_form=form,
    )


def _fetch_configs(repo_id: str, offline: str | None, kwargs: dict[str, Any]) -> Path:
    """The tokenizer and configs of ``repo_id``; returns the cache's snapshot folder they are in
    (every file of one revision lands in the same one)."""
    folder: Path | None = None
    fetched: set[str] = set()
    for name in CONFIG_FILES:
        path = _hub_get(repo_id, name, **kwargs)
        if path is not None:
            fetched.add(name)
            folder = path.parent
    if folder is None or not fetched & {"tokenizer.json", "vocab.txt"}:
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
    return folder


def _fetch_graph(
    repo_id: str, variant: str, offline: str | None, kwargs: dict[str, Any]
) -> tuple[Path, str]:
    """The graph of ``variant`` (and its weights file) from the repo, else from its companion
    graph repo at the pinned commit; returns its path and ``repo/file`` source."""
    for name in GRAPH_FILES[variant]:
        graph = _hub_get(repo_id, name, **kwargs)
        if graph is not None:
            # The export keeps the weights beside the graph; the cache puts both in one folder.
            _hub_get(repo_id, f"{name}.data", **kwargs)
            return graph, f"{repo_id}/{name}"
    looked = [f"{repo_id}/{n}" for n in GRAPH_FILES[variant]]
    companion = GRAPH_COMPANIONS.get(repo_id)
    if companion is not None and variant == "fp32":
        graph_repo, commit, names = companion
        for name in names:
            graph = _hub_get(graph_repo, name, **(kwargs | {"revision": commit}))
            if graph is not None:
                return graph, f"{graph_repo}/{name}"
        looked += [f"{graph_repo}/{n}" for n in names]
    raise ModelFilesError(
        f"No {variant} graph for {repo_id!r}: looked for {', '.join(looked)}"
        + (f" in the local hub cache ({offline}). " if offline else ". ")
        + export_hint(variant)
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
