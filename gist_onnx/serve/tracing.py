"""OpenTelemetry spans for the server's requests (``gist-onnx serve --otel``, the ``otel`` extra).

One server span per embeddings or tokenize request (route, status, texts, tokens, cache hits), a
child of the caller's trace where the request carries one (``traceparent``), and under it a span
for each stage of an embeddings request: ``queue`` (waiting for the graph), ``graph`` (the batch
it ran in: its size) and ``response`` (the JSON written). The stages' times are the ones the
batcher stamps, so a span covers exactly what the access log reports. Spans go to whatever
tracer provider the process has: ``opentelemetry-instrument gist-onnx serve ...`` configures one
from the standard ``OTEL_*`` variables (an OTLP exporter, for example); without one, the API's
no-op provider drops them.
"""

from __future__ import annotations

import time
from typing import Any

from .. import MissingExtraError, __version__


class Tracing:
    """The tracer the server's spans go to."""

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer

    @classmethod
    def from_provider(cls, provider: Any = None) -> Tracing:
        """Spans from ``provider`` (default: OpenTelemetry's global tracer provider)."""
        try:
            from opentelemetry import trace
        except ImportError:
            raise MissingExtraError("gist-onnx serve --otel", "otel", "opentelemetry-api") from None
        return cls(trace.get_tracer("gist_onnx.serve", __version__, tracer_provider=provider))

    def request(self, route: str, headers: Any = None) -> RequestSpan:
        """The span of one request to ``route``, a child of the caller's trace where its
        ``headers`` carry one (W3C ``traceparent``, or what the process's propagator reads)."""
        return RequestSpan(self.tracer, route, headers)


class RequestSpan:
    """One request's server span; its stages are added with the times the server measured
    (``time.perf_counter()`` stamps, turned into the wall-clock nanoseconds spans carry)."""

    def __init__(self, tracer: Any, route: str, headers: Any = None) -> None:
        from opentelemetry.propagate import extract
        from opentelemetry.trace import SpanKind, set_span_in_context

        self._perf = time.perf_counter()
        self._wall = time.time_ns()
        # The caller's trace, so that its spans and the server's make one trace.
        parent = extract(dict(headers)) if headers is not None else None
        self.span = tracer.start_span(
            f"POST {route}",
            context=parent,
            kind=SpanKind.SERVER,
            start_time=self._wall,
            attributes={"http.request.method": "POST", "http.route": route},
        )
        self._tracer = tracer
        self._context = set_span_in_context(self.span)

    def _ns(self, stamp: float) -> int:
        return self._wall + int((stamp - self._perf) * 1e9)

    def stage(self, name: str, start: float, end: float, **attributes: Any) -> None:
        """A child span from ``start`` to ``end`` (perf_counter stamps)."""
        child = self._tracer.start_span(
            name, context=self._context, start_time=self._ns(start), attributes=attributes
        )
        child.end(end_time=self._ns(max(end, start)))

    def end(self, status: int, **attributes: Any) -> None:
        from opentelemetry.trace import Status, StatusCode

        self.span.set_attribute("http.response.status_code", status)
        for key, value in attributes.items():
            self.span.set_attribute(f"gist_onnx.{key}", value)
        if status >= 500:
            self.span.set_status(Status(StatusCode.ERROR))
        self.span.end(end_time=self._ns(time.perf_counter()))
