"""Stage 5: the encoder users call: texts in, one float32 vector per text out."""

from __future__ import annotations

import operator
import os
import queue
import threading
import warnings
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Mapping, Sized
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .errors import GistOnnxError, InvalidInputError, ModelConfigError
from .model import (
    DEFAULT_MODEL,
    MANIFEST_FILE,
    IntegrityCheck,
    ModelConfig,
    ModelFiles,
    files_read,
    read_config,
    resolve,
    writable_by_others,
)
from .pooling import l2_normalize, pool
from .precision import quantize_embeddings
from .session import (
    CUDA,
    GraphInfo,
    GraphSession,
    ReplayedGraph,
    choose_providers,
    choose_threads,
    usable_cpus,
)
from .tokenizer import Batch, TextTokenizer, load_tokenizer

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

# Texts tokenized, length-sorted and batched together: large enough that sorting removes most
# padding, small enough that the tokenizer's per-text objects stay a few MB.
_CHUNK_BATCHES = 32
# On the CPU, at most this many (padded) tokens go through the graph in one run, whatever
# batch_size says. Measured on 2 cores: runs of 256-512 tokens keep the activations in cache and
# encoded 1.2-1.5x more short texts per second than runs of 4,096 (batch_size=128 x 32 tokens);
# 256 rather than 512 puts one long text in a run (its 12 attention matrices are 3 MB at 256
# tokens): int8 passages +3 to +6%, short texts and fp32 the same. A text's vector does not
# depend on its batch, so this changes speed only. With CUDA, batch_size alone sizes a run.
_CPU_TOKENS_PER_RUN = 256
# With overlap on, a chunk is tokenized this many batches at a time after the first, so that the
# graph starts at once. On an H200 (16 cores, batch_size 128), 1, 4 and 8 batches measured the
# same within noise (sentences 77k/78k/80k a second, passages 10.7k/10.4k/9.2k).
_OVERLAP_GROUP_BATCHES = 1
# With overlap on, at most this many padded batches wait ahead of the graph.
_PREFETCH = 8
# encode()'s batch_size when none is given. The CPU caps a run at 256 tokens anyway. On an H200,
# fp16, runs of 64 texts encoded 26% fewer sentences a second than runs of 128 (59k against 80k;
# passages 10.6k against 10.8k), 256 and 512 a little more (88k, 96k) for twice and four times
# the GPU memory; 128 keeps a run of 256-token texts at ~0.3 GB.
_DEFAULT_BATCH_CPU = 32
_DEFAULT_BATCH_CUDA = 128
# With CUDA, a run's width is rounded up to a multiple of this many tokens. ONNX Runtime's CUDA
# Attention pays for each input shape it has not run before: on an H200, fp16, a new width's first
# run took 44-86 ms against ~1 ms after (profiled: Attention 45 of 50 ms), whichever attention
# kernel was allowed. A fresh encoder's first pass over 1,024 sentences (batch 32) ran 659/s with
# 16 widths, 1,259/s padded to 8 (6 widths), 1,572/s to 16 (4); the passes after ran the same
# within noise (29k, 31k, 29k/s), so 8: fewer new shapes for at most 7 padded tokens a row.
# The CPU has no such cost (first and later runs the same) and pays for every padded token.
_PAD_MULTIPLE_CUDA = 8
# The largest batch_size taken: a chunk (batch_size x _CHUNK_BATCHES texts) is held in memory
# at once, and no device runs a million texts in one graph run anyway.
_MAX_BATCH_SIZE = 1 << 20


def _cut_runs(lengths: list[int], batch_size: int, cap: int) -> list[list[int]]:
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


class _Run(NamedTuple):
    """One graph run: which rows of its chunk it fills; ``chunk`` > 0 opens a chunk of that size."""

    chunk: int
    rows: list[int]
    batch: Batch


class GistEncoder:
    """Encode texts with GIST-all-MiniLM-L6-v2 (or any BERT sentence-transformers model) in ONNX.

    Args:
        model: a local folder (written by ``gist-onnx export``, or any folder holding a graph,
            the tokenizer and the sentence-transformers configs) or a hub repo id.
        variant: ``"fp32"`` (default), ``"int8"`` or ``"fp16"``: which graph of the folder to run.
        device: ``"cpu"`` (default), ``"cuda"`` (raises if CUDA cannot run) or ``"auto"`` (CUDA if
            it can run, else the CPU; ``provider`` tells which).
        providers: ONNX Runtime providers to use instead of what ``device`` picks.
        threads: CPU threads (default: one per core this process may use).
        overlap: tokenize and pad the next batches on a background thread while the graph runs
            the current one. Default: on with CUDA, where the graph outruns the tokenizer; off on
            the CPU, where both share the same cores (see benchmarks/README.md for the figures).
        spinning: let ONNX Runtime's threads spin between runs, waiting for the next (default: on
            for the CPU, where it is fastest for back-to-back batches; off with CUDA). Off suits a
            process that does other work between runs: ``gist-onnx serve`` turns it off.
        parallel_runs: on the CPU, when one call makes several graph runs (more texts than one
            run takes), run ``threads`` of them at once, one thread each, instead of one at a time
            on ``threads`` threads; a call of one run (one query, one batch) still uses them all.
            Default: on where ``threads`` > 1. Measured on 2 cores: the same throughput when the
            cores are free, +20-60% (int8) when the machine is busy; the vectors are the same
            either way.
        cuda_graph: with CUDA, run one text of up to 32 tokens (a query) through a CUDA graph,
            captured at the first such run and replayed after: 0.32 ms instead of 0.81 ms a query
            on an H200, the same vector. It holds a second session (the graph's weights twice on
            the GPU). Default: on with CUDA for graphs that pool inside; if the capture fails, a
            warning says so and queries take the usual path.
        revision, cache_dir, local_files_only: passed to the hub download; ``HF_HUB_OFFLINE=1``
            is respected as well.
        verify_files: check the files read against the sha256 sums of the folder's
            ``gist_onnx_manifest.json`` (the export writes it) and refuse a mismatch with
            :class:`ModelFilesError`. The check runs while the session loads; on by default.

    Attributes:
        variant, provider, max_seq_length, dimension, pooling, source: what was chosen.
        default_batch_size: ``encode``'s batch_size when a call gives none (32 on the CPU, 128
            with CUDA).
        tokenizer: the text tokenizer; ``tokenizer.pad_multiple`` rounds each run's width up
            (8 with CUDA, whose attention pays for every new input shape; 1 on the CPU).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        variant: str | None = None,
        device: str = "cpu",
        providers: list[Any] | None = None,
        threads: int | None = None,
        overlap: bool | None = None,
        spinning: bool | None = None,
        parallel_runs: bool | None = None,
        cuda_graph: bool | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        verify_files: bool = True,
    ) -> None:
        chosen_providers = choose_providers(device, providers)
        self.files: ModelFiles = resolve(
            model,
            variant or "fp32",
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        exposed = writable_by_others(self.files)
        if exposed:
            warnings.warn(
                f"{', '.join(map(str, exposed))} can be written by every user of this machine: "
                "anyone could replace the model's weights. Fix: chmod -R o-w "
                f"{self.files.folder}",
                UserWarning,
                stacklevel=2,
            )
        integrity = IntegrityCheck(self.files)
        if verify_files:
            integrity.start()
        try:
            self.config: ModelConfig = read_config(
                self.files.folder, modules=self.files.modules, manifest=self.files.manifest
            )
            self.tokenizer: TextTokenizer = load_tokenizer(
                self.files.folder,
                max_length=self.config.max_seq_length,
                do_lower_case=self.config.do_lower_case,
                config=self.config,
            )
            resolved_threads = choose_threads(threads)
            self.session = GraphSession(
                self.files.graph,
                providers=chosen_providers,
                threads=resolved_threads,
                spinning=spinning,
            )
        except GistOnnxError:
            integrity.wait()  # a corrupted file is the likelier cause: name it if so
            raise
        integrity.wait()
        graph_dim = self.session.info.dimension
        if self.config.dimension and graph_dim and graph_dim != self.config.dimension:
            raise ModelConfigError(
                f"The graph {self.files.graph} returns vectors of {graph_dim} but the model folder "
                f"says {self.config.dimension}; the graph belongs to another model. Re-export it."
            )
        # Whether the configs' pooling was checked against a record of the graph's own.
        self._pooling_checked = True
        if self.session.info.pooled:
            self._pooling_checked = _check_graph_pooling(self.config, self.files, self.session.info)
        dim = graph_dim or self.config.dimension
        if dim is None:
            raise ModelConfigError(
                f"Cannot tell the embedding size of {self.files.source}: neither the graph nor "
                "config.json / 1_Pooling/config.json gives it."
            )
        self.dimension: int = int(dim)
        self.overlap: bool = self.provider == CUDA if overlap is None else bool(overlap)
        # encode()'s batch_size when the call gives none.
        self.default_batch_size: int = (
            _DEFAULT_BATCH_CUDA if self.provider == CUDA else _DEFAULT_BATCH_CPU
        )
        self.tokenizer.pad_multiple = _PAD_MULTIPLE_CUDA if self.provider == CUDA else 1
        # With overlap, batches tokenized together after the first (see _plan; 0: the whole
        # chunk at once). benchmarks/gpu_check.py probe changes it to measure what it gains.
        self._group_batches = _OVERLAP_GROUP_BATCHES
        # Runs at once for calls of several runs (CPU only): one single-threaded session shared
        # by that many Python threads (ONNX Runtime releases the GIL and allows concurrent runs).
        workers = resolved_threads or usable_cpus()
        wanted = workers > 1 if parallel_runs is None else bool(parallel_runs)
        self.parallel_runs: int = workers if wanted and self.provider != CUDA else 1
        self._single: GraphSession | None = None  # made at the first call that needs it
        self._single_lock = threading.Lock()
        self._providers = chosen_providers
        # One text through a captured CUDA graph (see ReplayedGraph), made at the first query.
        self._use_replay = (
            self.provider == CUDA and self.session.info.pooled and cuda_graph is not False
        )
        self._replay: ReplayedGraph | None = None

    @property
    def variant(self) -> str:
        """The graph variant running: fp32, int8 or fp16."""
        return self.files.variant

    @property
    def provider(self) -> str:
        """The ONNX Runtime execution provider that runs the graph."""
        return self.session.provider

    @property
    def max_seq_length(self) -> int:
        """Texts are truncated to this many tokens, special tokens included."""
        return self.config.max_seq_length

    @property
    def pooling(self) -> str:
        """Pooling mode, and where it runs: inside the graph or in numpy."""
        where = "graph" if self.session.info.pooled else "numpy"
        if not self._pooling_checked:
            where += ", unchecked"
        return f"{self.config.pooling} ({where})"

    @property
    def files_read(self) -> list[Path]:
        """The model's files this encoder read: graph, weights, tokenizer, configs, manifest.
        What a deployment has to ship (``gist-onnx bundle`` copies exactly these)."""
        return files_read(self.files)

    @property
    def model_name(self) -> str:
        """The model's name: the hub repo id it was exported from or downloaded as, else the
        folder's name. Servers report it as the OpenAI ``model``."""
        return self.files.name

    @property
    def source(self) -> str:
        """Where the graph came from: a file path or ``repo/file`` on the hub."""
        return self.files.source

    def __repr__(self) -> str:
        return (
            f"GistEncoder(source={self.source!r}, variant={self.variant!r}, "
            f"provider={self.provider!r}, max_seq_length={self.max_seq_length}, "
            f"dimension={self.dimension}, pooling={self.pooling!r}, "
            f"normalized={self.config.normalize})"
        )

    def encode(
        self,
        texts: Iterable[str],
        batch_size: int | None = None,
        normalize_embeddings: bool = True,
        show_progress_bar: bool | None = None,
        *,
        precision: str = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
    ) -> npt.NDArray[Any]:
        """Encode texts into a float32 array of shape (number of texts, dimension), in input order.

        ``texts`` is a list or any iterable of str. A lone str is refused (use :meth:`encode_one`)
        so that the shape never depends on the input's type. Texts are tokenized in chunks,
        sorted by length and run ``batch_size`` at a time (on the CPU fewer when the texts are
        long: a run holds at most 256 padded tokens, which measured fastest), so a batch carries
        little padding; a text's vector does not depend on which batch it lands in. Default
        (``None``): :attr:`default_batch_size`, 32 on the CPU and 128 with CUDA, where larger
        runs keep the GPU busy.

        ``normalize_embeddings`` L2-normalizes the result; the GIST model normalizes anyway (its
        modules.json ends in Normalize), as sentence-transformers does.

        ``precision`` quantizes the output as sentence-transformers does: ``"int8"``,
        ``"uint8"``, ``"binary"`` or ``"ubinary"`` (see :mod:`gist_onnx.precision`, which also
        takes calibration ranges). ``convert_to_numpy`` and ``convert_to_tensor`` are accepted
        for sentence-transformers' callers: the result is always a numpy array (gist-onnx never
        imports torch; ``torch.from_numpy`` makes a tensor of it without a copy).
        """
        if convert_to_tensor or not convert_to_numpy:
            raise InvalidInputError(
                "gist-onnx returns numpy arrays (it never imports torch): drop convert_to_tensor "
                "/ convert_to_numpy=False and wrap the result with torch.from_numpy(...)."
            )
        if precision != "float32":
            return quantize_embeddings(
                self.encode(texts, batch_size, normalize_embeddings, show_progress_bar), precision
            )
        vectors, _ = self._encode(texts, batch_size, normalize_embeddings, show_progress_bar)
        return vectors

    def encode_with_token_counts(
        self, texts: Iterable[str], batch_size: int | None = None, normalize_embeddings: bool = True
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """:meth:`encode`'s vectors and, from the same tokenization, :meth:`count_tokens`'s
        counts: what an API reporting token usage needs, without tokenizing twice."""
        return self._encode(texts, batch_size, normalize_embeddings, None, counts=True)

    def _encode(
        self,
        texts: Iterable[str],
        batch_size: int | None,
        normalize_embeddings: bool,
        show_progress_bar: bool | None,
        *,
        counts: bool = False,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """The vectors, and with ``counts`` each text's token count (else an empty array)."""
        iterator, total = _texts(texts, "encode")
        batch_size = _positive_int(
            self.default_batch_size if batch_size is None else batch_size,
            "batch_size",
            _MAX_BATCH_SIZE,
        )
        runs = self._plan(iterator, batch_size)
        if self.overlap and (total is None or total > batch_size):
            runs = _prefetch(runs, _PREFETCH)
        progress = _progress(show_progress_bar, total)
        normalize = normalize_embeddings and not self.config.normalize
        # One output array, filled in place: allocated whole when the number of texts is known,
        # else grown as chunks arrive (see _grow), so that it is never held twice.
        out = np.empty((total or 0, self.dimension), dtype=np.float32)
        tokens = np.zeros(len(out) if counts else 0, dtype=np.int64)
        filled = start = 0
        pending: deque[tuple[list[int], Batch, Future[npt.NDArray[np.float32]]]] = deque()
        pool_: ThreadPoolExecutor | None = None

        def write(rows: list[int], batch: Batch, vectors: npt.NDArray[np.float32]) -> None:
            out[rows] = l2_normalize(vectors) if normalize else vectors
            if counts:
                tokens[rows] = batch.attention_mask.sum(axis=1)
            if progress is not None:
                progress.update(len(rows))

        try:
            first = next(runs, None)
            second = next(runs, None) if self.parallel_runs > 1 else None
            if second is not None:  # several runs: run them at once, one thread each
                # Imported here: ~5 ms that a cold start of one-text calls never needs.
                from concurrent.futures import ThreadPoolExecutor

                single = self._single_session()
                pool_ = ThreadPoolExecutor(self.parallel_runs, thread_name_prefix="gist-onnx-run")
            every = chain([r for r in (first, second) if r is not None], runs)
            for run in every:
                if run.chunk:
                    start, filled = filled, filled + run.chunk
                    if filled > len(out):
                        out = _grow(out, filled)
                        if counts:
                            tokens.resize(len(out), refcheck=False)
                rows = [start + row for row in run.rows]
                if pool_ is None:
                    write(rows, run.batch, self._run(run.batch))
                    continue
                pending.append((rows, run.batch, pool_.submit(self._run, run.batch, single)))
                if len(pending) > 2 * self.parallel_runs:  # bounded: results are written in order
                    rows, batch, future = pending.popleft()
                    write(rows, batch, future.result())
            while pending:
                rows, batch, future = pending.popleft()
                write(rows, batch, future.result())
        finally:
            if pool_ is not None:
                for _, _, future in pending:
                    future.cancel()
                pool_.shutdown(wait=True)  # no run outlives the call, even when one raised
            runs.close()  # stops the producer thread at once if the graph raised
            if progress is not None:
                progress.close()
        if filled < len(out):  # an iterable whose len() promised more than it gave
            out.resize((filled, self.dimension), refcheck=False)
        return out, tokens[:filled]

    def similarity(
        self, a: npt.NDArray[np.floating[Any]], b: npt.NDArray[np.floating[Any]]
    ) -> npt.NDArray[np.float32]:
        """Cosine similarity of every row of ``a`` with every row of ``b``: shape (len(a),
        len(b)), as sentence-transformers' ``similarity`` (cosine, its default)."""
        a2 = np.atleast_2d(np.asarray(a, dtype=np.float32))
        b2 = np.atleast_2d(np.asarray(b, dtype=np.float32))
        if a2.shape[-1] != b2.shape[-1]:
            raise InvalidInputError(
                f"similarity() needs vectors of one size, got {a2.shape[-1]} and {b2.shape[-1]}."
            )
        scores: npt.NDArray[np.float32] = l2_normalize(a2) @ l2_normalize(b2).T
        return scores

    def get_sentence_embedding_dimension(self) -> int:
        """The size of the vectors (sentence-transformers' name for :attr:`dimension`)."""
        return self.dimension

    def encode_one(self, text: str, normalize_embeddings: bool = True) -> npt.NDArray[np.float32]:
        """Encode one text into a float32 vector of shape (dimension,)."""
        if not isinstance(text, str):
            raise InvalidInputError(f"encode_one() takes a str, got {type(text).__name__}.")
        vector: npt.NDArray[np.float32] = self.encode(
            [text], normalize_embeddings=normalize_embeddings
        )[0]
        return vector

    def count_tokens(self, texts: Iterable[str]) -> npt.NDArray[np.int64]:
        """How many tokens the model reads for each text: after truncation at
        :attr:`max_seq_length`, special tokens included (what ``usage.prompt_tokens`` counts).

        Takes what :meth:`encode` takes and refuses the same inputs.
        """
        counts = [
            len(e) for _, encodings in self._tokenized(texts, "count_tokens") for e in encodings
        ]
        return np.array(counts, dtype=np.int64)

    def token_ids(self, texts: Iterable[str]) -> list[list[int]]:
        """The token ids the model reads for each text (special tokens included, truncated)."""
        tokenized = self._tokenized(texts, "token_ids")
        return [list(encoding.ids) for _, encodings in tokenized for encoding in encodings]

    def truncated(self, texts: Iterable[str]) -> npt.NDArray[np.bool_]:
        """For each text, whether it is longer than :attr:`max_seq_length` tokens, so that its
        vector represents only its beginning (sentence-transformers truncates the same way)."""
        flags = [
            self.tokenizer.truncated(text, encoding)
            for chunk, encodings in self._tokenized(texts, "truncated")
            for text, encoding in zip(chunk, encodings, strict=True)
        ]
        return np.array(flags, dtype=np.bool_)

    def _tokenized(
        self, texts: Iterable[str], method: str
    ) -> Generator[tuple[list[str], list[Any]], None, None]:
        iterator, _ = _texts(texts, method)
        offset = 0
        while chunk := list(islice(iterator, 1024)):
            _check_texts(chunk, offset)
            yield chunk, self._tokenize(chunk, offset)
            offset += len(chunk)

    def _tokenize(
        self, chunk: list[Any], offset: int, positions: list[int] | None = None
    ) -> list[Any]:
        """Tokenize texts (checked to be str by the caller), naming the text (by its index in the
        call) that fails: ``chunk[i]`` is text ``offset + i``, or ``offset + positions[i]``."""
        try:
            return self.tokenizer.tokenize(chunk)
        except TypeError:
            # The tokenizer refuses a whole batch for one str that is not valid Unicode (a lone
            # surrogate, as from '\udc80' in JSON or surrogateescape decoding) without saying
            # which: find it. Only this failing path pays for the search.
            for index, text in enumerate(chunk):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as exc:
                    where = offset + (positions[index] if positions is not None else index)
                    raise InvalidInputError(
                        f"Text {where} is not valid Unicode ({exc.reason} at character "
                        f"{exc.start}); fix or drop it, e.g. text.encode('utf-8', 'replace')"
                        ".decode('utf-8')."
                    ) from None
            raise

    def _plan(self, texts: Iterator[Any], batch_size: int) -> Generator[_Run, None, None]:
        """Tokenize texts a chunk at a time, sort each chunk by length and cut it into runs.

        With overlap, a chunk is ordered by characters and tokenized a batch at a time (see
        _OVERLAP_GROUP_BATCHES), so that the graph starts on the first batch while the next are
        tokenized: a whole chunk tokenized first (4,096 texts at batch_size 128) left a GPU idle
        for all of it. Runs are then cut in each group by tokens as without overlap.
        """
        chunk_size = batch_size * _CHUNK_BATCHES
        cap = _CPU_TOKENS_PER_RUN if self.provider != CUDA else 0
        start = 0
        while chunk := list(islice(texts, chunk_size)):
            _check_texts(chunk, start)
            groups: list[list[int] | None] = [None]  # None: the whole chunk at once
            if self.overlap and self._group_batches and len(chunk) > batch_size:
                order = sorted(range(len(chunk)), key=lambda i: -len(chunk[i]))
                step = batch_size * self._group_batches
                groups = [order[:batch_size]]
                groups += [order[g : g + step] for g in range(batch_size, len(order), step)]
            opened = False
            for group in groups:
                part = chunk if group is None else [chunk[i] for i in group]
                encodings = self._tokenize(part, start, group)
                lengths = [len(e) for e in encodings]  # len() is cheap; .ids builds a list
                for rows in _cut_runs(lengths, batch_size, cap):
                    batch = self.tokenizer.pad([encodings[i] for i in rows])
                    chunk_rows = rows if group is None else [group[i] for i in rows]
                    yield _Run(0 if opened else len(chunk), chunk_rows, batch)
                    opened = True
            start += len(chunk)

    def _single_session(self) -> GraphSession:
        """The single-threaded session for runs made at once (one more session over the same
        graph: ~13 MiB for the int8 graph, made at the first call of several runs)."""
        with self._single_lock:
            if self._single is None:
                self._single = GraphSession(
                    self.files.graph, providers=self._providers, threads=1, spinning=False
                )
            return self._single

    def _replayed(self) -> ReplayedGraph | None:
        """The captured graph for one text, made at its first use; None if it cannot be."""
        with self._single_lock:
            if self._replay is None and self._use_replay:
                try:
                    self._replay = ReplayedGraph(self.files.graph, self._providers)
                except Exception as exc:  # noqa: BLE001 -- the usual path still runs the query
                    self._use_replay = False
                    warnings.warn(
                        f"Could not capture the graph for one-text runs ({exc}); queries take "
                        "the usual path. GistEncoder(cuda_graph=False) skips the attempt.",
                        RuntimeWarning,
                        stacklevel=5,  # the caller of encode()
                    )
            return self._replay

    def _run(self, batch: Batch, session: GraphSession | None = None) -> npt.NDArray[np.float32]:
        if self._use_replay and session is None and batch.input_ids.shape[0] == 1:
            replay = self._replayed()
            if replay is not None and replay.fits(batch):
                return replay.run(batch)
        result = (session or self.session).run(batch)
        if not self.session.info.pooled:
            result = pool(result, batch.attention_mask, self.config.pooling)
            if self.config.normalize:
                result = l2_normalize(result)
        return result


_DONE = object()


def _prefetch(runs: Iterator[_Run], depth: int) -> Generator[_Run, None, None]:
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


def _check_graph_pooling(config: ModelConfig, files: ModelFiles, info: GraphInfo) -> bool:
    """A graph that pools inside does what the export built it to do: refuse configs that ask
    for something else (they would be reported, and silently not done). The graph's ONNX
    metadata says how it pools; a graph exported before it did falls back on the manifest.
    Returns False, with a warning, when neither records it (nothing to check against)."""
    asked = (config.pooling, config.normalize)
    if info.pooling is not None and info.normalize is not None:
        built, record = (info.pooling, info.normalize), "its ONNX metadata"
    elif config.exported_pooling is not None and config.exported_normalize is not None:
        built = (config.exported_pooling, config.exported_normalize)
        record = MANIFEST_FILE
    else:
        warnings.warn(
            f"{files.graph} pools inside, but neither its ONNX metadata nor a {MANIFEST_FILE} "
            f"records how: gist-onnx cannot check that it pools by {asked[0]} as the folder's "
            "configs say. Export the model with `gist-onnx export` to have it checked.",
            UserWarning,
            stacklevel=3,  # the caller of GistEncoder()
        )
        return False
    if built == asked:
        return True
    if not (files.folder / "modules.json").is_file():
        raise ModelConfigError(
            f"{files.folder} has no modules.json, which says whether the model normalizes its "
            f"vectors ({files.graph} pools by {built[0]} "
            f"{'and' if built[1] else 'without'} normalizing, per {record}). Copy modules.json "
            "from the model (the export writes it)."
        )
    raise ModelConfigError(
        f"{files.graph} pools by {built[0]} {'and' if built[1] else 'without'} normalizing inside "
        f"({record}), but the folder's configs ask for {asked[0]} pooling "
        f"{'and' if asked[1] else 'without'} normalizing (1_Pooling/config.json, "
        "modules.json). Re-export the folder with the configs you want."
    )


def _grow(out: npt.NDArray[np.float32], rows: int) -> npt.NDArray[np.float32]:
    """``out`` with room for at least ``rows`` rows, grown in place where the allocator can.

    Large blocks grow by remapping their pages, not by copying them, so small steps cost little;
    numpy zero-fills what it adds, so spare rows count in memory: growing by 1/32 keeps the peak
    within ~3% of the output's own size.
    """
    target = max(rows, len(out) + len(out) // 32)
    out.resize((target, out.shape[1]), refcheck=False)
    return out


def _texts(texts: Any, method: str) -> tuple[Iterator[Any], int | None]:
    """An iterator over ``texts`` and their number if known; refuses what is not a sequence of
    texts in a defined order."""
    if isinstance(texts, (str, bytes)):
        raise InvalidInputError(
            f"{method}() takes a list (or iterable) of texts and returns one row per text; for a "
            "single text use encode_one(text), or pass [text]."
        )
    if isinstance(texts, (set, frozenset, Mapping)):
        raise InvalidInputError(
            f"{method}() got a {type(texts).__name__}, whose order is not the caller's; pass a "
            "list (e.g. sorted(texts)) so that row i is the vector of text i."
        )
    shape = getattr(texts, "shape", None)
    if isinstance(shape, tuple) and len(shape) != 1:
        # A table (pandas, polars, pyarrow) iterates over its column names, and a 2-d array over
        # its rows: neither is one text a row. Anything with a shape must be a column.
        kind = type(texts).__name__
        hint = (
            'pass one column of it, e.g. df["text"]'
            if hasattr(texts, "columns") or hasattr(texts, "column_names")
            else "pass a 1-d array or a list of str (e.g. array.ravel().tolist())"
        )
        raise InvalidInputError(
            f"{method}() takes a sequence of texts (one text a row), got a {kind} of shape "
            f"{shape}; {hint}."
        )
    try:
        iterator = iter(texts)
    except TypeError:
        raise InvalidInputError(
            f"{method}() takes a list (or iterable) of str, got {type(texts).__name__}."
        ) from None
    return iterator, len(texts) if isinstance(texts, Sized) else None


def _positive_int(value: Any, name: str, most: int) -> int:
    """``value`` as an int if it is an integer from 1 to ``most`` (numpy integers too; not a
    bool)."""
    try:
        number = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        number = None
    if number is None or not 1 <= number <= most:
        raise InvalidInputError(
            f"{name} must be a positive integer of at most {most:,}, got {value!r}."
        )
    return number


def _check_texts(texts: list[Any], offset: int) -> None:
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(
                f"Text {offset + index} is of type {type(text).__name__}, not str; convert it "
                "first (None and numbers are not encoded silently)."
            )


def _progress(show: bool | None, total: int | None) -> Any:
    if not show:
        return None
    # tqdm comes with huggingface-hub; imported only when a bar is asked for.
    from tqdm.auto import tqdm

    return tqdm(desc="Encoding", unit="text", total=total)
