"""What ``GET /metrics`` reports, in Prometheus' text format: requests by route and status, texts,
tokens, batch sizes, queue depth, and latency histograms (whole request, time queued, graph run).

Written here rather than taken from prometheus-client: a few counters and histograms are all the
server needs, and the server extra stays three packages.
"""

from __future__ import annotations

import bisect
from collections import Counter

from ..cache import EmbeddingCache

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class Histogram:
    """Cumulative buckets, a sum and a count."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, running = [], 0
        sep = "," if labels else ""
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            out.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {running}')
        braces = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{braces} {self.total:.6f}")
        out.append(f"{name}_count{braces} {self.count}")
        return out


# The route label of every path the server has no route for: one label, whatever clients send,
# so that random paths can neither grow the page without bound nor break it.
OTHER_ROUTE = "other"


def escape(value: str) -> str:
    """A label value as Prometheus' text format writes it: backslash, double quote and newline
    escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """The server's counters and histograms. ``routes``: the paths the server serves, each its own
    label; any other path is counted under :data:`OTHER_ROUTE`."""

    def __init__(
        self, cache: EmbeddingCache | None = None, routes: frozenset[str] = frozenset()
    ) -> None:
        self.cache = cache
        self.routes = routes
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency: dict[str, Histogram] = {}
        self.texts = 0
        self.tokens = 0
        self.queue_depth = 0
        self.batch_texts = Histogram(BATCH_BUCKETS)
        self.run_seconds = Histogram(LATENCY_BUCKETS)
        self.queue_seconds = Histogram(LATENCY_BUCKETS)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        route = route if route in self.routes else OTHER_ROUTE
        self.requests[(route, status)] += 1
        self.latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_batch(self, texts: int, seconds: float) -> None:
        self.batch_texts.observe(texts)
        self.run_seconds.observe(seconds)

    def _cache_lines(self) -> list[str]:
        if self.cache is None:
            return []
        stats = self.cache.stats()
        return [
            "# HELP gist_onnx_cache_hits_total Texts answered from the cache.",
            "# TYPE gist_onnx_cache_hits_total counter",
            f"gist_onnx_cache_hits_total {stats.hits}",
            "# HELP gist_onnx_cache_misses_total Texts the cache did not hold (run by the graph).",
            "# TYPE gist_onnx_cache_misses_total counter",
            f"gist_onnx_cache_misses_total {stats.misses}",
            "# HELP gist_onnx_cache_entries Texts the cache holds.",
            "# TYPE gist_onnx_cache_entries gauge",
            f"gist_onnx_cache_entries {stats.entries}",
            "# HELP gist_onnx_cache_bytes Memory the cache's entries take.",
            "# TYPE gist_onnx_cache_bytes gauge",
            f"gist_onnx_cache_bytes {stats.bytes}",
        ]

    def render(self) -> str:
        """The Prometheus text exposition."""
        lines = [
            "# HELP gist_onnx_requests_total HTTP requests by route and status.",
            "# TYPE gist_onnx_requests_total counter",
        ]
        for (route, status), count in sorted(self.requests.items()):
            label = f'route="{escape(route)}",status="{status}"'
            lines.append(f"gist_onnx_requests_total{{{label}}} {count}")
        lines += [
            "# HELP gist_onnx_texts_total Texts embedded.",
            "# TYPE gist_onnx_texts_total counter",
            f"gist_onnx_texts_total {self.texts}",
            "# HELP gist_onnx_tokens_total Tokens read by the model (after truncation).",
            "# TYPE gist_onnx_tokens_total counter",
            f"gist_onnx_tokens_total {self.tokens}",
            "# HELP gist_onnx_queue_texts Texts waiting for the graph.",
            "# TYPE gist_onnx_queue_texts gauge",
            f"gist_onnx_queue_texts {self.queue_depth}",
            *self._cache_lines(),
            "# HELP gist_onnx_batch_texts Texts per graph batch (across requests).",
            "# TYPE gist_onnx_batch_texts histogram",
            *self.batch_texts.lines("gist_onnx_batch_texts"),
            "# HELP gist_onnx_run_seconds Time the graph took per batch.",
            "# TYPE gist_onnx_run_seconds histogram",
            *self.run_seconds.lines("gist_onnx_run_seconds"),
            "# HELP gist_onnx_queue_seconds Time a request waited before its batch ran.",
            "# TYPE gist_onnx_queue_seconds histogram",
            *self.queue_seconds.lines("gist_onnx_queue_seconds"),
            "# HELP gist_onnx_request_seconds Time from request to response, by route.",
            "# TYPE gist_onnx_request_seconds histogram",
        ]
        for route, histogram in sorted(self.latency.items()):
            lines += histogram.lines("gist_onnx_request_seconds", f'route="{escape(route)}"')
        return "\n".join(lines) + "\n"
