"""Ray Data: a callable class for ``Dataset.map_batches`` that loads the model once per actor.

    import ray
    from gist_onnx.integrations.ray import GistEmbedder

    ds = ray.data.read_parquet("s3://bucket/docs/")
    ds = ds.map_batches(
        GistEmbedder,
        fn_constructor_kwargs={"model": "/models/gist", "variant": "int8", "column": "text"},
        compute=ray.data.ActorPoolStrategy(size=4),  # actors; GPU ones: num_gpus=1, device="cuda"
        num_cpus=1,
        batch_size=256,
        batch_format="numpy",
    )
    ds.write_parquet("s3://bucket/embedded/")

Each row gains ``embedding`` (float32, 384). The model folder must be readable on every node: a
shared path, or shipped with the job (``runtime_env={"working_dir": ...}`` for a small model).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._cache import shared_encoder


class GistEmbedder:
    """Embeds ``column`` of each batch into ``output_column`` (numpy or pandas batches)."""

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        variant: str | None = None,
        device: str = "cpu",
        threads: int | None = None,
        column: str = "text",
        output_column: str = "embedding",
        batch_size: int | None = None,
    ) -> None:
        self.encoder = shared_encoder(
            None if model is None else os.fspath(model), variant, device, threads
        )
        self.column, self.output_column, self.batch_size = column, output_column, batch_size

    def __call__(self, batch: Any) -> Any:
        if hasattr(batch, "columns"):  # pandas
            batch = batch.copy()
            vectors = self.encoder.encode(batch[self.column].tolist(), batch_size=self.batch_size)
            batch[self.output_column] = list(vectors)
            return batch
        texts = [str(t) if isinstance(t, np.str_) else t for t in batch[self.column].tolist()]
        out = dict(batch)
        out[self.output_column] = self.encoder.encode(texts, batch_size=self.batch_size)
        return out
