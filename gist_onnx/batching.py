"""An async encoder that batches its callers: concurrent coroutines share graph runs.

Every caller's texts join one queue, and a single worker runs what is waiting as one batch on a
graph thread, off the event loop. A text's vector does not depend on its batch, so each caller
gets exactly what :meth:`GistEncoder.encode <gist_onnx.GistEncoder.encode>` gives its own texts,
whatever it was batched with. The worker takes what queued while the graph ran (no wait when
idle); after a run, if little is waiting, it waits a few milliseconds more for others to join.
With the encoder's cache, texts it holds are answered on the event loop without queueing, and a
text asked for by several callers at once runs once.

>>> import asyncio
>>> from gist_onnx import AsyncGistEncoder, GistEncoder
>>> async def main():
...     async with AsyncGistEncoder(GistEncoder("gist-onnx-model")) as encoder:
...         return await asyncio.gather(*(encoder.encode([q]) for q in ("a", "b", "c")))
>>> asyncio.run(main())  # doctest: +SKIP

``gist-onnx serve`` batches its requests with it; so do the LangChain and LlamaIndex adapters'
async methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from .errors import GistOnnxError, InvalidInputError
from .inputs import invalid_unicode, positive_int

if TYPE_CHECKING:
    from .engine import Engine, HasEngine

Result = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]

DEFAULT_MAX_BATCH_TEXTS = 256
DEFAULT_BATCH_WAIT_MS = 2.0


class QueueFull(GistOnnxError, RuntimeError):
    """More texts are waiting than the queue takes: retry later (the server answers 429). A
    call whose texts alone exceed the queue can never fit and raises
    :class:`~gist_onnx.InvalidInputError` instead."""


@dataclass
class Job:
    """One caller's texts and the future it awaits: ``(vectors, token counts)``, as
    :meth:`GistEncoder.encode_with_token_counts` returns them. ``enqueued``, ``started`` and
    ``finished`` are ``time.perf_counter()`` stamps (all equal when the cache held every text)."""

    texts: list[str]
    future: asyncio.Future[Result]
    normalize: bool = True
    truncate_dim: int | None = None
    # Rows the cache did not hold (those run), and the rows filled so far.
    missing: list[int] = field(default_factory=list)
    out: npt.NDArray[np.float32] = field(default_factory=lambda: np.empty((0, 0), np.float32))
    tokens: npt.NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    enqueued: float = field(default_factory=time.perf_counter)
    started: float = 0.0
    finished: float = 0.0
    # Whether its texts still count in the queue (until taken for a run, or its caller gone).
    queued: bool = False


class AsyncGistEncoder:
    """Batch concurrent ``await encode(...)`` calls into shared graph runs.

    Args:
        encoder: the :class:`~gist_onnx.GistEncoder` to run (its cache, if any, is used).
        max_batch_texts: the most texts one graph batch takes from the queue (default 256).
        max_queue_texts: the most texts waiting at once; past it :meth:`submit` raises
            :class:`QueueFull` (default: no bound).
        batch_wait_ms: after a run, how long the worker waits for more callers when fewer than
            half a batch are waiting (default 2 ms).
        batching: False runs one caller's texts at a time (for comparison).
        on_batch: called after each graph batch with its number of texts and its seconds (an
            exception it raises is reported as a warning and the batcher goes on).

    The worker starts with the first call, on that call's event loop; :meth:`aclose` (or
    ``async with``) stops it and its graph thread, and so does the end of that loop (the worker
    cancelled, as ``asyncio.run`` cancels what is left when it returns). One instance serves one
    event loop.
    """

    def __init__(
        self,
        encoder: HasEngine,
        *,
        max_batch_texts: int = DEFAULT_MAX_BATCH_TEXTS,
        max_queue_texts: int | None = None,
        batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
        batching: bool = True,
        on_batch: Callable[[int, float], None] | None = None,
        on_close: Callable[[], object] | None = None,
    ) -> None:
        self.encoder = encoder
        self.engine: Engine = encoder.engine  # what runs the texts (see gist_onnx.engine)
        self.max_batch_texts = positive_int(max_batch_texts, "max_batch_texts", 1 << 20)
        self.max_queue_texts = (
            None
            if max_queue_texts is None
            else positive_int(max_queue_texts, "max_queue_texts", 1 << 30)
        )
        self.batch_wait = float(batch_wait_ms) / 1000
        self.batching = batching
        self.on_batch = on_batch
        self._on_close = on_close
        self.pending_texts = 0
        self._running: list[Job] = []  # the jobs of the batch on the graph thread
        # The texts of that batch -> the rows waiting for them, and the jobs that arrived while
        # it ran and wait only for its texts (they ride on it instead of running them again).
        self._in_flight: dict[str, list[tuple[Job, int]]] = {}
        self._riding: list[Job] = []
        self._jobs: deque[Job] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # One thread runs the graph: ONNX Runtime's own threads use the cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gist-onnx-graph")
        self._closed = False

    # ------------------------------------------------------------------ the callers' side
    async def encode(
        self,
        texts: Iterable[str],
        *,
        normalize_embeddings: bool = True,
        prompt: str | None = None,
        prompt_name: str | None = None,
        truncate_dim: int | None = None,
    ) -> npt.NDArray[np.float32]:
        """The vectors :meth:`GistEncoder.encode` gives ``texts`` with the same options, computed
        in batches shared with the other callers (:meth:`submit`'s job gives the token counts
        too)."""
        job = self.submit(
            texts,
            normalize_embeddings=normalize_embeddings,
            prompt=prompt,
            prompt_name=prompt_name,
            truncate_dim=truncate_dim,
        )
        vectors, _ = await job.future  # cancelling the caller cancels the job: it is dropped
        return vectors

    def submit(
        self,
        texts: Iterable[str],
        *,
        normalize_embeddings: bool = True,
        prompt: str | None = None,
        prompt_name: str | None = None,
        truncate_dim: int | None = None,
    ) -> Job:
        """Queue ``texts`` and return their :class:`Job` at once (its future resolves when they
        have run). A text that is not a str raises here, before anything queues; one that is not
        valid Unicode fails its own job when it runs. Raises :class:`QueueFull` when the texts
        do not fit the queue."""
        if self._closed:
            raise GistOnnxError(
                "This AsyncGistEncoder is closed (by aclose(), or by the end of the event loop "
                "it ran on); make another."
            )
        engine = self.engine
        items = engine.checked_texts(texts, engine.prompt(prompt, prompt_name))
        loop = self._start()
        job = Job(
            items,
            loop.create_future(),
            normalize=normalize_embeddings,
            truncate_dim=engine.dimensions(truncate_dim) or engine.truncate_dim,
        )
        job.out, job.tokens, job.missing = engine.from_cache(items)
        if not job.missing:
            job.started = job.finished = job.enqueued
            _settle(job, self._finish(job))
            return job
        if self._in_flight and all(job.texts[row] in self._in_flight for row in job.missing):
            # Every text it needs is on the graph thread now: it waits for that run.
            job.started = time.perf_counter()
            for row in job.missing:
                self._in_flight[job.texts[row]].append((job, row))
            self._riding.append(job)
            return job
        limit = self.max_queue_texts
        if limit is not None and len(job.missing) > limit:
            job.future.cancel()
            raise InvalidInputError(
                f"{len(job.missing)} texts to run, more than this queue takes at once ({limit}): "
                "split them into smaller calls."
            )
        if limit is not None and self.pending_texts + len(job.missing) > limit:
            job.future.cancel()
            raise QueueFull(
                f"The queue is full: {self.pending_texts} texts waiting, {len(job.missing)} more "
                f"asked for, limit {limit}. Retry shortly."
            )
        self._jobs.append(job)
        self.pending_texts += len(job.missing)
        job.queued = True
        # A caller that goes stops counting at once, not when the worker next looks.
        job.future.add_done_callback(lambda _: self._drop(job))
        assert self._wakeup is not None
        self._wakeup.set()
        return job

    async def aclose(self) -> None:
        """Stop the worker and the graph thread; callers still waiting, those of the batch
        running included, are cancelled."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._stopped()
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    def _drop(self, job: Job) -> None:
        """``job`` no longer counts in the queue (taken for a run, or its caller gone)."""
        if job.queued:
            job.queued = False
            self.pending_texts -= len(job.missing)

    def _stopped(self) -> None:
        """What stopping leaves: every caller still waiting cancelled, the graph thread told to
        end, the loop and the worker let go."""
        self._closed = True
        for job in [*self._running, *self._riding, *self._jobs]:
            if not job.future.done():
                job.future.cancel()
        self._running, self._riding, self._in_flight = [], [], {}
        self._jobs.clear()
        self.pending_texts = 0
        self._executor.shutdown(wait=False)
        self._worker = None
        self._loop = None
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close()

    async def __aenter__(self) -> AsyncGistEncoder:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ the worker's side
    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._run(), name="gist-onnx-batcher")
        elif self._loop is not loop:
            raise GistOnnxError(
                "This AsyncGistEncoder runs on another event loop; make one per loop "
                "(GistEncoder.aencode does)."
            )
        return loop

    def _take(self) -> list[Job]:
        """The waiting jobs to run next: all of them up to ``max_batch_texts`` (one with batching
        off), skipping those whose caller has gone."""
        taken: list[Job] = []
        count = 0
        while self._jobs:
            job = self._jobs[0]
            if job.future.done():  # cancelled: the caller has gone (and no longer counts)
                self._jobs.popleft()
                continue
            size = len(job.missing)
            if taken and (not self.batching or count + size > self.max_batch_texts):
                break
            self._jobs.popleft()
            self._drop(job)
            taken.append(job)
            count += size
        return taken

    def _finish(self, job: Job) -> Result:
        vectors = self.engine.finish(job.out, job.normalize, job.truncate_dim)
        return vectors, job.tokens

    async def _run(self) -> None:
        """Serve the queue until cancelled (by :meth:`aclose`, or by the end of the loop)."""
        try:
            await self._serve()
        finally:
            self._stopped()

    async def _serve(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        busy = False
        while True:
            if not self._jobs:
                busy = False
                self._wakeup.clear()
                await self._wakeup.wait()
            if busy and self.batching and self.pending_texts < self.max_batch_texts // 2:
                await asyncio.sleep(self.batch_wait)  # let the calls in flight join
            jobs = self._take()
            if not jobs:
                continue
            # Each distinct text once, whichever jobs asked for it.
            rows: dict[str, list[tuple[Job, int]]] = {}
            for job in jobs:
                for row in job.missing:
                    rows.setdefault(job.texts[row], []).append((job, row))
            texts = list(rows)
            started = time.perf_counter()
            for job in jobs:
                job.started = started
            busy = True
            self._running, self._in_flight, self._riding = jobs, rows, []
            try:
                vectors, counts = await loop.run_in_executor(
                    self._executor, self.engine.compute, texts
                )
            except Exception:  # noqa: BLE001 -- each job's own error is found by running it alone
                # Run each job alone, so that an error reaches its own caller, naming the
                # caller's text, and the other callers get their vectors.
                riding, self._in_flight = self._riding, {}
                for job in [*jobs, *riding]:
                    if not job.future.done():
                        _settle(job, await self._alone(job))
                self._running, self._riding = [], []
                continue
            jobs, self._in_flight = [*jobs, *self._riding], {}
            finished = time.perf_counter()
            self._report(len(texts), finished - started)
            for text, vector, count in zip(texts, vectors, counts, strict=True):
                for job, row in rows[text]:
                    job.out[row] = vector
                    job.tokens[row] = count
            for job in jobs:
                job.finished = finished
                if not job.future.done():
                    _settle(job, self._finish(job))
            self._running, self._riding = [], []

    def _report(self, texts: int, seconds: float) -> None:
        """``on_batch``, whose failure must not stop the batcher (every later caller would wait
        forever): reported as a warning instead."""
        if self.on_batch is None:
            return
        try:
            self.on_batch(texts, seconds)
        except Exception as exc:  # noqa: BLE001 -- a callback's fault, reported, never fatal
            import warnings

            warnings.warn(
                f"AsyncGistEncoder's on_batch callback raised {exc!r}; batches go on.",
                RuntimeWarning,
                stacklevel=1,
            )

    async def _alone(self, job: Job) -> Result | Exception:
        """``job``'s texts run on their own: the result, or what the encoder raised."""
        loop = asyncio.get_running_loop()
        job.started = time.perf_counter()
        texts = [job.texts[row] for row in job.missing]
        try:
            vectors, counts = await loop.run_in_executor(self._executor, self.engine.compute, texts)
        except InvalidInputError as exc:
            # Its index counts the texts that ran, not the caller's: name the caller's text.
            try:
                invalid_unicode(job.texts, 0, None)
            except InvalidInputError as named:
                return named
            return exc
        except Exception as exc:  # noqa: BLE001 -- the caller's own error
            return exc
        finally:
            job.finished = time.perf_counter()
        job.out[job.missing] = vectors
        job.tokens[job.missing] = counts
        return self._finish(job)


def _settle(job: Job, outcome: Result | BaseException) -> None:
    """Hand ``outcome`` to the caller waiting on ``job``, unless it has gone."""
    job.finished = job.finished or time.perf_counter()
    if job.future.done():
        return
    if isinstance(outcome, BaseException):
        job.future.set_exception(outcome)
    else:
        job.future.set_result(outcome)
