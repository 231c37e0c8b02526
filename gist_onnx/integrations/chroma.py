"""Chroma: ``GistEmbeddingFunction``, registered under the name ``gist-onnx`` so that a
persisted collection can rebuild it from its config.

    import chromadb
    from gist_onnx.integrations.chroma import GistEmbeddingFunction
    client = chromadb.PersistentClient("db")
    docs = client.get_or_create_collection(
        "docs", embedding_function=GistEmbeddingFunction(model="/models/gist", variant="int8")
    )
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .. import GistEncoder, MissingExtraError

try:
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
    from chromadb.utils.embedding_functions import register_embedding_function
except ImportError as exc:  # pragma: no cover - exercised where chromadb is absent
    raise MissingExtraError("GistEmbeddingFunction", "chroma", "chromadb") from exc


@register_embedding_function
class GistEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function over a :class:`GistEncoder`."""

    def __init__(
        self, model: str | None = None, variant: str | None = None, device: str = "cpu"
    ) -> None:
        self.model, self.variant, self.device = model, variant, device
        args = () if model is None else (model,)
        self.encoder = GistEncoder(*args, variant=variant, device=device)

    def __call__(self, input: Documents) -> Embeddings:
        vectors = self.encoder.encode(list(input))
        return [np.asarray(v, dtype=np.float32) for v in vectors]

    @staticmethod
    def name() -> str:
        return "gist-onnx"

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model, "variant": self.variant, "device": self.device}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> GistEmbeddingFunction:
        return GistEmbeddingFunction(
            model=config.get("model"),
            variant=config.get("variant"),
            device=config.get("device", "cpu"),
        )

    def default_space(self) -> Literal["cosine", "l2", "ip"]:
        return "cosine"  # the vectors are unit length
