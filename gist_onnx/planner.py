"""Stage 5's run planner: how the texts of one ``encode`` call become graph runs, and how the runs
are made (in order, one at a time or several at once, tokenizing ahead on a thread).

The package's interface (the benchmarks use it too): :func:`cut_runs`, :func:`plan`,
:func:`prefetch`, :func:`run_in_order`, :func:`collect`, :func:`grow` and the tuning constants
below, each annotated with the figures that chose it (the device's own, such as tokens a run, are in
:mod:`gist_onnx.device`). A text's vector never depends on its run: everything here changes
speed and memory only.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator
from itertools import chain, islice
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from . import heap
from .pooling import l2_normalize
from .tokenizer import Batch

if TYPE_CHECKING:
    from concurrent.futures import Future

Vectors = npt.NDArray[np.float32]

# Texts tokenized, length-sorted and batched together: large enough that sorting removes most
# padding, small enough that the tokenizer's per-text objects stay a few MB.
CHUNK_BATCHES = 32
# With overlap on, at most this many padded batches wait ahead of the graph.
PREFETCH = 8
# The largest batch_size taken: a chunk (batch_size x CHUNK_BATCHES texts) is held in memory
# at once, and no device runs a million texts in one graph run anyway.
MAX_BATCH_SIZE = 1 << 20


class Run(NamedTuple):
    """One graph run: which rows of its chunk it fills; ``chunk`` > 0 opens a chunk of that size."""

    chunk: int
    rows: list[int]
    batch: Batch


def cut_runs(lengths: list[int], batch_size: int, cap: int) -> list[list[int]]:
    """The texts of each run, by index: longest first (the first run shows at once whether memory
    suffices), at most ``batch_size`` texts and, if ``cap``, at most ``cap`` padded tokens a run
    (one text at least)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    runs, begin = [], 0
    while begin < len(order):
        longest = lengths[order[begin]]  # sorted: the first is the longest
        size = max(1, min(batch_size, cap // longest)) if cap else batch_size
        runs.append(order[begin : begin + size])
        begin += size
    return runs


def plan(
    texts: Iterator[str],
    batch_size: int,
    *,
    tokenize: Callable[[list[str], int, list[int] | None], list[Any]],
    pad: Callable[[list[Any]], Batch],
    check: Callable[[list[Any], int], None],
    cap: int,
    by_batch: bool,
) -> Generator[Run, None, None]:
    """Tokenize texts a chunk at a time, sort each chunk by length and cut it into runs.

    ``tokenize(texts, offset, positions)`` tokenizes part of a chunk (naming a failing text by
    its index in the call), ``pad`` pads one run, ``check(chunk, offset)`` refuses what is not a
    text before any work. ``cap``: at most this many padded tokens a run (0: no cap).

    With ``by_batch`` (overlap on), a chunk is ordered by characters and tokenized a batch at a
    time, so that the graph starts on the first batch while the next are tokenized: a whole
    chunk tokenized first (4,096 texts at batch_size 128) left a GPU idle for all of it. (On an
    H200, groups of 1, 4 and 8 batches measured the same within noise: one it is.) Runs are
    then cut in each group by tokens as without overlap.
    """
    start = 0
    while chunk := list(islice(texts, batch_size * CHUNK_BATCHES)):
        check(chunk, start)
        groups: list[list[int] | None] = [None]  # None: the whole chunk at once
        if by_batch and len(chunk) > batch_size:
            order = sorted(range(len(chunk)), key=lambda i: -len(chunk[i]))
            groups = [order[g : g + batch_size] for g in range(0, len(order), batch_size)]
        opened = False
        for group in groups:
            part = chunk if group is None else [chunk[i] for i in group]
            encodings = tokenize(part, start, group)
            lengths = [len(e) for e in encodings]  # len() is cheap; .ids builds a list
            for rows in cut_runs(lengths, batch_size, cap):
                batch = pad([encodings[i] for i in rows])
                chunk_rows = rows if group is None else [group[i] for i in rows]
                yield Run(0 if opened else len(chunk), chunk_rows, batch)
                opened = True
        start += len(chunk)


_DONE = object()


def prefetch(runs: Iterator[Run], depth: int = PREFETCH) -> Generator[Run, None, None]:
    """Produce ``runs`` on a background thread, at most ``depth`` ahead of the consumer.

    The graph releases the GIL while it runs, so tokenizing and padding the next batches overlap
    with it. An error in the producer is raised in the consumer; a consumer that stops early (an
    error while running the graph, a generator closed) stops the producer.
    """
    ahead: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        """Queue ``item`` unless the consumer has stopped; False once it has."""
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for run in runs:
                if not put(run):
                    return
        except BaseException as exc:  # noqa: BLE001 -- handed to the consumer, which raises it
            put(exc)
            return
        put(_DONE)

    worker = threading.Thread(target=produce, name="gist-onnx-tokenize", daemon=True)
    worker.start()
    try:
        while True:
            item = ahead.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def run_in_order(
    runs: Iterator[Run],
    run: Callable[[Batch], Vectors],
    *,
    parallel: int,
    single: Callable[[], Callable[[Batch], Vectors]],
) -> Generator[tuple[Run, Vectors], None, None]:
    """Each run with its vectors, in the order of ``runs``.

    With ``parallel`` > 1 and two runs or more, ``parallel`` runs are made at once on a thread
    pool, each by the single-threaded runner ``single()`` returns (one ONNX Runtime session is
    shared: it releases the GIL and allows concurrent runs); at most ``2 * parallel`` wait for
    their turn. Else each run is made by ``run`` (on all threads) when its turn comes. No run
    outlives the generator, even when one raised or the consumer stopped.
    """
    first = next(runs, None)
    second = next(runs, None) if parallel > 1 else None
    if second is None:
        for item in chain([first] if first is not None else [], runs):
            yield item, run(item.batch)
        return
    # Imported here: ~5 ms that a cold start of one-text calls never needs.
    from concurrent.futures import ThreadPoolExecutor

    alone = single()
    pending: deque[tuple[Run, Future[Vectors]]] = deque()
    pool = ThreadPoolExecutor(parallel, thread_name_prefix="gist-onnx-run")
    try:
        for item in chain([r for r in (first, second) if r is not None], runs):
            pending.append((item, pool.submit(alone, item.batch)))
            if len(pending) > 2 * parallel:  # bounded: results are handed on in order
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True)


def grow(out: npt.NDArray[Any], rows: int) -> npt.NDArray[Any]:
    """``out`` with room for at least ``rows`` rows, grown in place where the allocator can.

    Large blocks grow by remapping their pages, not by copying them, so small steps cost little;
    numpy zero-fills what it adds, so spare rows count in memory: growing by 1/32 keeps the peak
    within ~3% of the output's own size.
    """
    target = max(rows, len(out) + len(out) // 32)
    out.resize((target, *out.shape[1:]), refcheck=False)
    return out


def collect(
    made: Generator[tuple[Run, Vectors], None, None],
    total: int | None,
    dimension: int,
    *,
    counts: bool,
    normalize: bool,
    progress: Any = None,
) -> tuple[Vectors, npt.NDArray[np.int64]]:
    """The runs' vectors put back in the texts' order: one row per text (L2-normalized per run
    with ``normalize``), and with ``counts`` each text's token count. One output array, filled
    in place: allocated whole when ``total`` is known, else grown as chunks arrive (see
    :func:`grow`), so that it is never held twice. ``made`` is closed (no run outlives the
    call), ``progress`` (a tqdm bar) updated and closed, and after a large call the memory it
    used given back (:mod:`gist_onnx.heap`)."""
    out = np.empty((total or 0, dimension), dtype=np.float32)
    tokens = np.zeros(len(out) if counts else 0, dtype=np.int64)
    filled = start = ran = 0
    try:
        for run, vectors in made:
            ran += run.batch.input_ids.size
            if run.chunk:
                start, filled = filled, filled + run.chunk
                if filled > len(out):
                    out = grow(out, filled)
                    if counts:
                        tokens.resize(len(out), refcheck=False)
            rows = [start + row for row in run.rows]
            out[rows] = l2_normalize(vectors) if normalize else vectors
            if counts:
                tokens[rows] = run.batch.attention_mask.sum(axis=1)
            if progress is not None:
                progress.update(len(rows))
    finally:
        made.close()
        if progress is not None:
            progress.close()
        if ran >= heap.TRIM_AFTER_TOKENS:
            heap.trim()  # what the call used, back to the system
    if filled < len(out):  # an iterable whose len() promised more than it gave
        out.resize((filled, dimension), refcheck=False)
    return out, tokens[:filled]
