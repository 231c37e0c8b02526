"""An exact cache of vectors: a text seen before gets the vector the graph gave it, without a run.

A text's vector does not depend on the batch it ran in beyond float32 rounding (the runs are
padded per run and pooled over the mask; another padding width changes the shapes the kernels
add over), so a cached vector is exactly the one the graph gave that text, and what
:meth:`encode <gist_onnx.GistEncoder.encode>` would compute again to that rounding. The cache
holds the graph's output for a text (before ``truncate_dim`` and a call's own normalization,
which are applied after, as for a text that missed) and its token count, under a key made of the
model files' identity (their sha256 from the export's manifest where checked, else their paths,
sizes, inodes and change times), the settings read from the configs, the variant and the text
with its prompt. One cache may serve several encoders: their entries never mix.

It is bounded twice: by entries and by bytes (each entry counts its vector, its text and a fixed
overhead); the least recently used entries go first. It is thread-safe.

>>> from gist_onnx import EmbeddingCache, GistEncoder
>>> encoder = GistEncoder("gist-onnx-model", cache=EmbeddingCache(max_entries=50_000))
... # doctest: +SKIP
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .errors import InvalidInputError

# What one entry costs beside its vector and its text: the key tuple, the OrderedDict's node, the
# array's header (measured with tracemalloc on CPython 3.11: ~340 bytes; rounded up).
ENTRY_OVERHEAD = 400
DEFAULT_ENTRIES = 10_000
DEFAULT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class CacheStats:
    """What the cache holds and how it has done since it was made."""

    hits: int
    misses: int
    entries: int
    bytes: int
    max_entries: int
    max_bytes: int

    @property
    def hit_rate(self) -> float:
        looked = self.hits + self.misses
        return self.hits / looked if looked else 0.0


Key = tuple[str, str]


class EmbeddingCache:
    """A bounded, thread-safe, least-recently-used map from (model identity, text) to the text's
    vector and token count.

    Args:
        max_entries: the most texts it holds (default 10,000).
        max_bytes: the most memory its entries take, vectors and texts (default 64 MiB: ~40,000
            short texts of a 384-dimension model).
    """

    def __init__(self, max_entries: int = DEFAULT_ENTRIES, max_bytes: int = DEFAULT_BYTES) -> None:
        for name, value in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a positive int, got {value!r}.")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Key, tuple[npt.NDArray[np.float32], int, int]] = OrderedDict()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> CacheStats:
        """Hits, misses, entries and bytes."""
        with self._lock:
            return CacheStats(
                self._hits,
                self._misses,
                len(self._entries),
                self._bytes,
                self.max_entries,
                self.max_bytes,
            )

    def clear(self) -> None:
        """Drop every entry (the counts of hits and misses stay)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def get_many(
        self, identity: str, texts: Sequence[str]
    ) -> list[tuple[npt.NDArray[np.float32], int] | None]:
        """Each text's (vector, token count), or None where it is not held. Counts a hit per
        text found; misses are counted as texts are run and put (:meth:`put_many`), so a text
        looked up several times but run once is one miss."""
        found: list[tuple[npt.NDArray[np.float32], int] | None] = []
        with self._lock:
            for text in texts:
                entry = self._entries.get((identity, text))
                if entry is None:
                    found.append(None)
                else:
                    self._entries.move_to_end((identity, text))
                    self._hits += 1
                    found.append((entry[0], entry[1]))
        return found

    def put_many(
        self,
        identity: str,
        texts: Sequence[str],
        vectors: npt.NDArray[np.float32],
        counts: npt.NDArray[np.int64],
    ) -> None:
        """Hold each text's vector (copied: the caller's array stays its own) and token count;
        each text put was one the graph ran: a miss."""
        with self._lock:
            self._misses += len(texts)
            for text, vector, count in zip(texts, vectors, counts, strict=True):
                key = (identity, text)
                size = vector.nbytes + sys.getsizeof(text) + ENTRY_OVERHEAD
                if size > self.max_bytes:
                    continue
                old = self._entries.pop(key, None)
                if old is not None:
                    self._bytes -= old[2]
                row = np.array(vector, dtype=np.float32, copy=True)
                row.flags.writeable = False
                self._entries[key] = (row, int(count), size)
                self._bytes += size
            while self._entries and (
                len(self._entries) > self.max_entries or self._bytes > self.max_bytes
            ):
                _, (_, _, size) = self._entries.popitem(last=False)
                self._bytes -= size


def as_cache(value: EmbeddingCache | int | bool | None) -> EmbeddingCache | None:
    """``GistEncoder(cache=...)``: an :class:`EmbeddingCache`, a number of entries, True for the
    defaults, or None / False / 0 for none."""
    if value is None or value is False:
        return None
    if value is True:
        return EmbeddingCache()
    if isinstance(value, EmbeddingCache):
        return value
    if isinstance(value, int):
        return EmbeddingCache(max_entries=value) if value else None
    raise InvalidInputError(
        f"cache must be an EmbeddingCache, a number of entries, True or None; got {value!r}."
    )
