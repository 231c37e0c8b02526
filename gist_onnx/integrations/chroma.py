"""Chroma: ``GistEmbeddingFunction``, registered under the name ``gist-onnx`` so that a
persisted collection can rebuild it from its config, and :func:`open_collection`, which opens or
creates a collection and refuses to add vectors of another model or variant to it.

    import chromadb
    from gist_onnx.integrations.chroma import open_collection
    client = chromadb.PersistentClient("db")
    docs = open_collection(client, "docs", model="/models/gist", variant="int8")
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .. import GistEncoder, InvalidInputError, MissingExtraError

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
        self.encoder = GistEncoder(model, variant=variant, device=device)

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

    def validate_config_update(
        self, old_config: dict[str, Any], new_config: dict[str, Any]
    ) -> None:
        """Refuse a change of model or variant: the collection's vectors would mix two spaces."""
        _same_vectors(old_config, new_config)


# What decides the vectors: another model or variant gives vectors unlike the stored ones.
_VECTOR_KEYS = ("model", "variant")


def _same_vectors(stored: dict[str, Any], asked: dict[str, Any]) -> None:
    changed = [k for k in _VECTOR_KEYS if stored.get(k) != asked.get(k)]
    if changed:
        raise InvalidInputError(
            "This collection holds vectors of "
            + ", ".join(f"{k}={stored.get(k)!r}" for k in _VECTOR_KEYS)
            + "; its embedding function cannot change to "
            + ", ".join(f"{k}={asked.get(k)!r}" for k in _VECTOR_KEYS)
            + " (the vectors would not compare). Open it with the same model and variant, or "
            "embed into a new collection."
        )


def open_collection(
    client: Any,
    name: str,
    *,
    model: str | None = None,
    variant: str | None = None,
    device: str = "cpu",
    **kwargs: Any,
) -> Any:
    """The collection ``name`` of ``client``, created with a :class:`GistEmbeddingFunction` if
    it does not exist; an existing one must have been made with the same model and variant
    (:class:`~gist_onnx.InvalidInputError` otherwise). ``kwargs`` go to
    ``get_or_create_collection``."""
    function = GistEmbeddingFunction(model=model, variant=variant, device=device)
    # Chroma itself refuses a collection made with another embedding function; what it lets
    # through is the same function with another config, whose vectors would not compare.
    collection = client.get_or_create_collection(name, embedding_function=function, **kwargs)
    stored = collection.configuration_json.get("embedding_function") or {}
    _same_vectors(stored.get("config") or {}, function.get_config())
    return collection
