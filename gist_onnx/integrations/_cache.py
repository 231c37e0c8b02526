"""One encoder per process and configuration, shared by the adapters that run in workers (Spark,
Dask, Ray): loading the model once per worker, not once per batch."""

from __future__ import annotations

import functools

from .. import GistEncoder


@functools.lru_cache(maxsize=4)
def shared_encoder(
    model: str | None, variant: str | None, device: str, threads: int | None
) -> GistEncoder:
    """The process's encoder for this configuration, created on first use."""
    return GistEncoder(model, variant=variant, device=device, threads=threads)
