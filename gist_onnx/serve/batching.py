"""Batching across requests: every request's texts join one queue, and a single worker runs what
is waiting as one ``encode`` call off the event loop.

``encode`` sorts the texts it gets by length and cuts them into runs under a token budget, and a
text's vector does not depend on its batch, so a request gets what ``encode`` gives for its own
texts, whatever it was batched with. The worker takes what has queued while the graph ran (so
batching costs no wait when the server is idle); after a run, if little is waiting, it waits a
few milliseconds more for others to join.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .. import GistEncoder, GistOnnxError
from .metrics import Metrics

Result = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]


class QueueFull(GistOnnxError, RuntimeError):
    """More texts are waiting than the queue takes (the server answers 429)."""


@dataclass
class Job:
    """One request's texts and the future its handler awaits."""

    texts: list[str]
    future: asyncio.Future[Result]
    enqueued: float = field(default_factory=time.perf_counter)
    started: float = 0.0
    finished: float = 0.0


class Batcher:
    """The queue and its single worker (:meth:`run`, a task for the server's lifetime)."""

    def __init__(
        self,
        encoder: GistEncoder,
        *,
        max_queue_texts: int,
        max_batch_texts: int,
        batch_wait_ms: float,
        batching: bool,
        metrics: Metrics,
    ) -> None:
        self.encoder = encoder
        self.max_queue_texts = max_queue_texts
        self.max_batch_texts = max_batch_texts
        self.batch_wait = batch_wait_ms / 1000
        self.batching = batching
        self.metrics = metrics
        self.pending_texts = 0
        self._jobs: deque[Job] = deque()
        self._wakeup = asyncio.Event()
        # One thread runs the graph: ONNX Runtime's own threads use the cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gist-onnx-graph")

    def submit(self, texts: list[str]) -> Job:
        """Queue ``texts``; raises :class:`QueueFull` when they do not fit."""
        if self.pending_texts + len(texts) > self.max_queue_texts:
            raise QueueFull
        job = Job(texts, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self.pending_texts += len(texts)
        self.metrics.queue_depth = self.pending_texts
        self._wakeup.set()
        return job

    def _take(self) -> list[Job]:
        """The waiting jobs to run next: all of them up to ``max_batch_texts`` (one with batching
        off), skipping those whose client has gone."""
        taken: list[Job] = []
        count = 0
        while self._jobs:
            job = self._jobs[0]
            if job.future.done():  # cancelled: the client disconnected
                self._jobs.popleft()
                self.pending_texts -= len(job.texts)
                continue
            if taken and (not self.batching or count + len(job.texts) > self.max_batch_texts):
                break
            self._jobs.popleft()
            self.pending_texts -= len(job.texts)
            taken.append(job)
            count += len(job.texts)
        self.metrics.queue_depth = self.pending_texts
        return taken

    def _encode(self, texts: list[str]) -> Result:
        return self.encoder.encode_with_token_counts(texts)

    async def run(self) -> None:
        """Serve the queue until cancelled."""
        loop = asyncio.get_running_loop()
        busy = False
        while True:
            if not self._jobs:
                busy = False
                self._wakeup.clear()
                await self._wakeup.wait()
            if busy and self.batching and self.pending_texts < self.max_batch_texts // 2:
                await asyncio.sleep(self.batch_wait)  # let the requests in flight join
            jobs = self._take()
            if not jobs:
                continue
            texts = [text for job in jobs for text in job.texts]
            started = time.perf_counter()
            for job in jobs:
                job.started = started
            try:
                vectors, counts = await loop.run_in_executor(self._executor, self._encode, texts)
            except Exception as exc:  # noqa: BLE001 -- handed to the request it belongs to
                busy = True
                if len(jobs) == 1:
                    _settle(jobs[0], exc)
                else:
                    # One request's texts failed the batch (its error names an index in the
                    # merged batch): run each alone, so the error reaches its own request, with
                    # its own index, and the others get their vectors.
                    for job in jobs:
                        if not job.future.done():
                            _settle(job, await self._alone(job))
                continue
            busy = True
            finished = time.perf_counter()
            self.metrics.observe_batch(len(texts), finished - started)
            start = 0
            for job in jobs:
                end = start + len(job.texts)
                job.finished = finished
                _settle(job, (vectors[start:end], counts[start:end]))
                start = end

    async def _alone(self, job: Job) -> Result | Exception:
        """``job``'s texts encoded on their own: the result, or what ``encode`` raised."""
        loop = asyncio.get_running_loop()
        job.started = time.perf_counter()
        try:
            return await loop.run_in_executor(self._executor, self._encode, job.texts)
        except Exception as exc:  # noqa: BLE001 -- the request's own error
            return exc
        finally:
            job.finished = time.perf_counter()

    def close(self) -> None:
        """Stop the graph thread (after the worker task was cancelled)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        for job in self._jobs:
            if not job.future.done():
                job.future.cancel()


def _settle(job: Job, outcome: Result | BaseException) -> None:
    """Hand ``outcome`` to the request waiting on ``job``, unless it has gone."""
    job.finished = job.finished or time.perf_counter()
    if job.future.done():
        return
    if isinstance(outcome, BaseException):
        job.future.set_exception(outcome)
    else:
        job.future.set_result(outcome)
