"""LlamaIndex: ``GistEmbedding``, a ``BaseEmbedding`` for indexes and query engines.

from llama_index.core import Settings
from gist_onnx.integrations.llama_index import GistEmbedding
Settings.embed_model = GistEmbedding(model="/models/gist", variant="int8")
"""

from __future__ import annotations

from typing import Any

from .. import GistEncoder, MissingExtraError

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding
    from pydantic import PrivateAttr
except ImportError as exc:  # pragma: no cover - exercised where llama-index-core is absent
    raise MissingExtraError("GistEmbedding", "llama-index", "llama-index-core") from exc


class GistEmbedding(BaseEmbedding):
    """LlamaIndex embeddings computed by a :class:`GistEncoder`."""

    model: str | None = None
    variant: str | None = None
    device: str = "cpu"
    _encoder: GistEncoder = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        data.setdefault("model_name", data.get("model") or "avsolatorio/GIST-all-MiniLM-L6-v2")
        super().__init__(**data)
        self._encoder = GistEncoder(self.model, variant=self.variant, device=self.device)

    @classmethod
    def class_name(cls) -> str:
        return "GistEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        vector: list[float] = self._encoder.encode_one(query).tolist()
        return vector

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_query_embedding(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = self._encoder.encode(list(texts)).tolist()
        return vectors

    # The async paths go through GistEncoder.aencode: concurrent calls (a query engine's, an
    # ingestion pipeline's workers) share graph runs, off the event loop.
    async def _aget_query_embedding(self, query: str) -> list[float]:
        vector: list[float] = (await self._encoder.aencode([query]))[0].tolist()
        return vector

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await self._aget_query_embedding(text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        # One batch (LlamaIndex's default embeds one text at a time).
        vectors: list[list[float]] = (await self._encoder.aencode(list(texts))).tolist()
        return vectors
