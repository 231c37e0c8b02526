"""LangChain: ``GistEmbeddings``, an ``Embeddings`` for vector stores and retrievers.

from gist_onnx.integrations.langchain import GistEmbeddings
embeddings = GistEmbeddings("/models/gist", variant="int8")
store = InMemoryVectorStore.from_texts(texts, embeddings)
"""

from __future__ import annotations

import os
from typing import Any

from .. import GistEncoder, MissingExtraError

try:
    from langchain_core.embeddings import Embeddings
except ImportError as exc:  # pragma: no cover - exercised where langchain-core is absent
    raise MissingExtraError("GistEmbeddings", "langchain", "langchain-core") from exc


class GistEmbeddings(Embeddings):
    """LangChain embeddings computed by a :class:`GistEncoder` (arguments are its own)."""

    def __init__(self, model: str | os.PathLike[str] | None = None, **encoder_kwargs: Any) -> None:
        self.encoder = GistEncoder(model, **encoder_kwargs)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = self.encoder.encode(list(texts)).tolist()
        return vectors

    def embed_query(self, text: str) -> list[float]:
        vector: list[float] = self.encoder.encode_one(text).tolist()
        return vector

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        # GistEncoder.aencode: concurrent calls share graph runs, off the event loop.
        vectors: list[list[float]] = (await self.encoder.aencode(list(texts))).tolist()
        return vectors

    async def aembed_query(self, text: str) -> list[float]:
        vector: list[float] = (await self.encoder.aencode([text]))[0].tolist()
        return vector
