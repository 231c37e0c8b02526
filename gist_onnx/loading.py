"""Stage 5, loading: from a model (folder or hub id) and the device's arguments to an
:class:`~gist_onnx.engine.Engine`: the device profile, the files (checked against the manifest
while the session loads), the configs, the tokenizer and the session, in that order.

:class:`~gist_onnx.GistEncoder` calls :func:`load` with its own arguments, which it documents.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from . import options
from .cache import EmbeddingCache, as_cache
from .device import OPENVINO, profile_for
from .engine import Engine, Session
from .errors import GistOnnxError, ModelConfigError
from .model import (
    DEFAULT_MODEL,
    IntegrityCheck,
    ModelFiles,
    read_config,
    resolve,
    writable_by_others,
)
from .session import GraphSession, choose_providers, choose_threads, provider_names, usable_cpus
from .tokenizer import load_tokenizer

BACKENDS = ("onnx", "openvino")


def load(
    model: str | os.PathLike[str] | None = DEFAULT_MODEL,
    *,
    variant: str | None = None,
    device: str = "cpu",
    providers: list[Any] | str | None = None,
    threads: int | None = None,
    overlap: bool | None = None,
    spinning: bool | None = None,
    parallel_runs: bool | None = None,
    cuda_graph: bool | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    verify_files: bool = True,
    truncate_dim: int | None = None,
    cache: EmbeddingCache | int | bool | None = None,
    int8_form: str | None = None,
    backend: str = "onnx",
    stacklevel: int = 2,
) -> Engine:
    """The engine of ``model`` on this device (the arguments are :class:`~gist_onnx.GistEncoder`'s;
    ``stacklevel`` points warnings at the caller's caller). ``model=None`` is the default model."""
    backend = check_backend(backend, variant, device, providers)
    chosen = [OPENVINO] if backend == "openvino" else choose_providers(device, providers)
    resolved_threads = choose_threads(threads, stacklevel=stacklevel + 1)
    # Every device choice, made once: see gist_onnx.device.
    profile = profile_for(
        provider_names(chosen)[0],
        resolved_threads or usable_cpus(),
        int8_form=int8_form or options.int8_form(),
    )
    files = resolve(
        DEFAULT_MODEL if model is None else model,
        "fp32" if variant is None else variant,
        revision=revision,
        cache_dir=cache_dir,
        local_files_only=local_files_only,
        int8_form=profile.int8.form,
    )
    _warn_if_writable(files, stacklevel + 1)
    integrity = IntegrityCheck(files)
    if verify_files:
        integrity.start()
    try:
        config = read_config(files.folder, modules=files.modules, manifest=files.manifest)
        tokenizer = load_tokenizer(
            files.folder,
            max_length=config.max_seq_length,
            do_lower_case=config.do_lower_case,
            config=config,
        )
        session: Session
        if backend == "openvino":
            from .engine_openvino import OpenVINOSession

            session = OpenVINOSession(files.graph, variant=files.variant, threads=profile.threads)
        else:
            session = GraphSession(
                files.graph,
                providers=chosen,
                threads=resolved_threads,
                spinning=spinning,
                settings=profile.settings,
            )
    except GistOnnxError:
        integrity.wait()  # a corrupted file is the likelier cause: name it if so
        raise
    integrity.wait()
    return Engine(
        files=files,
        config=config,
        tokenizer=tokenizer,
        session=session,
        profile=profile,
        providers=chosen,
        backend=backend,
        cache=as_cache(cache),
        # Whether the files read were checked against the manifest's sha256 (the cache's key
        # may then name them by it; else by what the file system says of them).
        verified=bool(verify_files),
        overlap=overlap,
        parallel_runs=parallel_runs,
        cuda_graph=cuda_graph,
        truncate_dim=truncate_dim,
    )


def _warn_if_writable(files: ModelFiles, stacklevel: int) -> None:
    exposed = writable_by_others(files)
    if exposed:
        warnings.warn(
            f"{', '.join(map(str, exposed))} can be written by every user of this machine: "
            f"anyone could replace the model's weights. Fix: chmod -R o-w {files.folder}",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


def check_backend(backend: str, variant: str | None, device: str, providers: Any) -> str:
    """``backend`` checked against the other arguments: OpenVINO runs the fp32 graph (as fp32 or
    bf16) on the CPU; bf16 runs only there."""
    if backend not in BACKENDS:
        raise ModelConfigError(
            f"Unknown backend {backend!r}; use 'onnx' (ONNX Runtime) or 'openvino' (the "
            "openvino extra)."
        )
    if backend == "openvino":
        if variant not in (None, "fp32", "bf16"):
            raise ModelConfigError(
                f"backend='openvino' runs the fp32 graph as variant 'fp32' or 'bf16', not "
                f"{variant!r}; the int8 and fp16 graphs run on ONNX Runtime (backend='onnx')."
            )
        if device not in ("cpu", "auto") or providers is not None:
            raise ModelConfigError(
                "backend='openvino' runs on the CPU: leave device and providers out, or use "
                "backend='onnx' for CUDA."
            )
    elif variant == "bf16":
        raise ModelConfigError(
            "variant='bf16' is the fp32 graph computed in bfloat16 by OpenVINO: pass "
            "backend='openvino' (pip install 'gist-onnx[openvino]'), or use 'fp32' or 'int8'."
        )
    return backend
