"""The server's OpenAPI 3.1 description, served at ``/openapi.json``: what each route takes and
answers, the schema API clients and fuzzers (the test suite runs schemathesis on it) read."""

from __future__ import annotations

from typing import Any

from .. import __version__

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": "string"},
            },
        }
    },
}


def _errors(*statuses: int) -> dict[str, Any]:
    what = {
        400: "The request is malformed; the message says which field.",
        401: "Missing or wrong API key (with --api-key).",
        404: "No such route, or a model this server does not serve (code model_not_found).",
        405: "The route does not take this method.",
        408: "The body did not arrive in time.",
        413: "Too many texts, too long a text, or too large a body.",
        429: "The queue is full; retry after Retry-After seconds.",
        503: "The server is warming up or shutting down.",
    }
    return {
        str(s): {
            "description": what[s],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for s in statuses
    }


def openapi_schema(
    *, model: str, dimension: int, max_inputs: int, names: list[str] | None = None
) -> dict[str, Any]:
    """The OpenAPI document of a server for ``model`` (vectors of ``dimension``); ``names``: the
    model ids requests may name (None: any)."""
    embeddings = {"$ref": "#/components/schemas/EmbeddingsResponse"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "gist-onnx", "version": __version__},
        "paths": {
            "/v1/embeddings": _post("Embed texts (OpenAI's shape)", embeddings, "embeddings"),
            "/embeddings": _post("The same, without /v1", embeddings, "embeddings_unversioned"),
            "/tokenize": _post("The token ids the model reads", _TOKENIZE_RESPONSE, "tokenize"),
            "/v1/models": _get(
                "The model served",
                {"type": "object", "required": ["object", "data"]},
                "application/json",
                "models",
            ),
            "/health": _get(
                "Ready: the same as /health/ready",
                {"type": "object", "required": ["status"]},
                "application/json",
                "health",
                503,
            ),
            "/health/ready": _get(
                "Ready: warmed up and not draining (503 while warming up or draining)",
                {"type": "object", "required": ["status"]},
                "application/json",
                "ready",
                503,
            ),
            "/health/live": _get(
                "Live: the process serves",
                {"type": "object", "required": ["status"]},
                "application/json",
                "live",
            ),
            "/metrics": _get("Prometheus metrics", {"type": "string"}, "text/plain", "metrics"),
            "/openapi.json": _get("This document", {"type": "object"}, "application/json", "spec"),
        },
        "components": {
            "schemas": {
                "EmbeddingsRequest": _request(model, dimension, max_inputs, names),
                "EmbeddingsResponse": _embeddings_response(dimension),
                "Error": _ERROR,
            }
        },
    }


def _request(
    model: str, dimension: int, max_inputs: int, names: list[str] | None
) -> dict[str, Any]:
    """An embeddings (or tokenize) request."""
    text = {"type": "string", "minLength": 1}
    texts = {
        "oneOf": [
            text,
            {"type": "array", "items": text, "minItems": 1, "maxItems": max_inputs},
        ],
        "description": "A text or a list of texts, none empty (token ids are not accepted).",
    }
    served: dict[str, Any] = (
        {"type": ["string", "null"], "description": f"Any name; {model} answers."}
        if names is None
        else {"enum": [*names, None], "description": "A model this server serves, or none."}
    )
    request = {
        "type": "object",
        "required": ["input"],
        "properties": {
            "input": texts,
            "model": served,
            "encoding_format": {"enum": ["float", "base64", None]},
            "dimensions": {"enum": [dimension, None]},
            "user": {"type": ["string", "null"]},
        },
    }
    return request


def _embeddings_response(dimension: int) -> dict[str, Any]:
    """An embeddings response: one vector of ``dimension`` floats (or its base64) per text."""
    embedding = {
        "type": "object",
        "required": ["object", "index", "embedding"],
        "properties": {
            "object": {"const": "embedding"},
            "index": {"type": "integer", "minimum": 0},
            "embedding": {
                "oneOf": [
                    {
                        "type": "array",
                        "items": {"type": "number"},
                        "minItems": dimension,
                        "maxItems": dimension,
                    },
                    {"type": "string", "description": "base64 of little-endian float32"},
                ]
            },
        },
    }
    usage = {
        "type": "object",
        "required": ["prompt_tokens", "total_tokens"],
        "properties": {
            "prompt_tokens": {"type": "integer", "minimum": 0},
            "total_tokens": {"type": "integer", "minimum": 0},
        },
    }
    embeddings_response = {
        "type": "object",
        "required": ["object", "data", "model", "usage"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": embedding},
            "model": {"type": "string"},
            "usage": usage,
        },
    }
    return embeddings_response


_TOKENIZE_RESPONSE = {
    "type": "object",
    "required": ["object", "model", "max_seq_length", "data"],
    "properties": {
        "object": {"const": "list"},
        "model": {"type": "string"},
        "max_seq_length": {"type": "integer"},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "tokens", "count", "truncated"],
                "properties": {
                    "index": {"type": "integer"},
                    "tokens": {"type": "array", "items": {"type": "integer"}},
                    "count": {"type": "integer"},
                    "truncated": {"type": "boolean"},
                },
            },
        },
    },
}


def _post(summary: str, answer: dict[str, Any], op_id: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "operationId": op_id,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/EmbeddingsRequest"}
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": answer}},
                },
                **_errors(400, 401, 404, 405, 408, 413, 429, 503),
            },
        }
    }


def _get(
    summary: str, answer: dict[str, Any], media: str, op_id: str, *more: int
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "operationId": op_id,
            "responses": {
                "200": {"description": "OK", "content": {media: {"schema": answer}}},
                **_errors(401, 405, *more),
            },
        }
    }
