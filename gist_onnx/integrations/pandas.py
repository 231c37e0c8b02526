"""A pandas-level function for Spark's ``pandas_udf`` and Dask's ``map_partitions``.

    from gist_onnx.integrations.pandas import embed_series

    # Dask: one vector (a numpy array) per text, the model loaded once per worker process
    vectors = ddf["text"].map_partitions(embed_series, model="/models/gist", meta=("text", "O"))

    # Spark
    from pyspark.sql.functions import pandas_udf
    @pandas_udf("array<float>")
    def embed(texts: pd.Series) -> pd.Series:
        return embed_series(texts, model="/models/gist", variant="int8")
    df.withColumn("embedding", embed("text"))

The model folder must be readable on every worker (a shared path, or shipped with the job).
"""

from __future__ import annotations

import os
from typing import Any

from .. import MissingExtraError
from ._cache import shared_encoder


def embed_series(
    texts: Any,
    *,
    model: str | os.PathLike[str] | None = None,
    variant: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
    batch_size: int | None = None,
) -> Any:
    """A pandas Series of float32 vectors (numpy arrays), one per text, with the index of
    ``texts``. The encoder is created once per process and reused by later calls."""
    try:
        import pandas as pd
    except ImportError:
        raise MissingExtraError("embed_series", "pandas", "pandas") from None
    encoder = shared_encoder(None if model is None else os.fspath(model), variant, device, threads)
    vectors = encoder.encode(list(texts), batch_size=batch_size)
    return pd.Series(list(vectors), index=texts.index, name=getattr(texts, "name", None))
