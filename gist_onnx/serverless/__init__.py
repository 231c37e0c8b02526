"""AWS Lambda: the handler that serves OpenAI-style embeddings (:mod:`.function`; configure
``gist_onnx.serverless.handler``) and the builder of the zips it runs from (:mod:`.bundle`,
``gist-onnx bundle``)."""

from __future__ import annotations

from .function import get_encoder, handler, model_folder

__all__ = ["get_encoder", "handler", "model_folder"]
