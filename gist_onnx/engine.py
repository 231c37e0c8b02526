"""Stage 5a: the engine both encoders drive: what one call does between texts and vectors.

Prompting, the vectors' size, the cache, tokenizing, planning the runs, running them on the graph
session and finishing the output (normalized, cut to ``truncate_dim``): :class:`GistEncoder`
(``gist_onnx.encoder``) is the facade over it with sentence-transformers' habits, and
:class:`~gist_onnx.AsyncGistEncoder` (``gist_onnx.batching``) drives the same engine for
coroutines, through the public methods below. An engine is built from the stages already loaded
(configs, tokenizer, session, device profile), so a test can build one over a fake session.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from . import planner
from .cache import EmbeddingCache
from .device import DeviceProfile
from .errors import InvalidInputError, ModelConfigError
from .inputs import check_texts, invalid_unicode, positive_int, texts_of
from .model import ModelConfig, ModelFiles, files_identity
from .model.configs import check_graph_pooling
from .pooling import l2_normalize, pool
from .session import GraphInfo, GraphSession, ReplayedGraph
from .tokenizer import Batch, TextTokenizer

if TYPE_CHECKING:
    from .errors import InvalidInputError


class Session(Protocol):
    """What the engine runs batches on: :class:`~gist_onnx.session.GraphSession`, OpenVINO's
    session, or a test's fake."""

    info: GraphInfo

    @property
    def provider(self) -> str: ...

    def run(self, batch: Batch) -> npt.NDArray[np.float32]: ...


class HasEngine(Protocol):
    """What :class:`~gist_onnx.AsyncGistEncoder` drives: an object with an engine (a
    :class:`~gist_onnx.GistEncoder`)."""

    engine: Engine


class Engine:
    """The run machinery of one loaded model.

    Args:
        files: the model's files (the graph a second session or a CUDA capture reads again, and
            what the cache's :attr:`identity` names).
        config: the folder's configs.
        tokenizer: the text tokenizer (its ``pad_multiple`` is set from the profile).
        session: what runs a padded batch.
        profile: every device choice (run sizes, padding, threads, overlap, CUDA graphs).
        providers: the ONNX Runtime providers, for the sessions made later.
        backend: ``"onnx"`` or ``"openvino"`` (part of :attr:`identity`).
        cache: the vectors of texts seen before, or None.
        verified: whether the files were checked against the manifest's sha256.
        overlap, parallel_runs, cuda_graph: as :class:`~gist_onnx.GistEncoder` takes them (None:
            the profile's choice).
        truncate_dim: the vectors' size by default, or None for the graph's.
    """

    def __init__(
        self,
        *,
        files: ModelFiles,
        config: ModelConfig,
        tokenizer: TextTokenizer,
        session: Session,
        profile: DeviceProfile,
        providers: list[Any],
        backend: str = "onnx",
        cache: EmbeddingCache | None = None,
        verified: bool = False,
        overlap: bool | None = None,
        parallel_runs: bool | None = None,
        cuda_graph: bool | None = None,
        truncate_dim: int | None = None,
    ) -> None:
        self.files, self.config, self.tokenizer = files, config, tokenizer
        self.session, self.profile, self.providers = session, profile, providers
        self.backend, self.cache, self.verified = backend, cache, verified
        self.pooling_checked = True  # whether the configs' pooling matched the graph's record
        self.full_dimension: int = self._check_graph()
        settings = profile.settings
        self.overlap: bool = settings.overlap if overlap is None else bool(overlap)
        # encode()'s batch_size when the call gives none.
        self.default_batch_size: int = settings.default_batch
        tokenizer.pad_multiple = settings.pad_multiple
        # CPU threads: what was asked (capped at the usable CPUs), else one per usable CPU.
        self.threads: int = profile.threads
        # Runs at once for calls of several runs (CPU only): one single-threaded session shared
        # by that many Python threads (ONNX Runtime releases the GIL and allows concurrent runs).
        wanted = self.threads > 1 if parallel_runs is None else bool(parallel_runs)
        self.parallel_runs: int = self.threads if wanted and settings.parallel_runs else 1
        self.single: GraphSession | None = None  # made at the first call that needs it
        self._single_lock = threading.Lock()
        # One text through a captured CUDA graph (see ReplayedGraph), made at the first query.
        self.use_replay: bool = bool(
            settings.cuda_graph and session.info.pooled and cuda_graph is not False
        )
        self.replay: ReplayedGraph | None = None
        self._identity: str | None = None
        # The vectors' size: the graph's, or truncate_dim.
        self.truncate_dim: int | None = self.dimensions(truncate_dim)
        self.dimension: int = self.truncate_dim or self.full_dimension

    def _check_graph(self) -> int:
        """The graph against the folder's configs (its vector size, its pooling); returns the
        vector size."""
        info = self.session.info
        graph_dim = info.dimension
        if self.config.dimension and graph_dim and graph_dim != self.config.dimension:
            raise ModelConfigError(
                f"The graph {self.files.graph} returns vectors of {graph_dim} but the model folder "
                f"says {self.config.dimension}; the graph belongs to another model. Re-export it."
            )
        if info.pooled:
            self.pooling_checked = check_graph_pooling(
                self.config, self.files, info.pooling, info.normalize
            )
        dim = graph_dim or self.config.dimension
        if dim is None:
            raise ModelConfigError(
                f"Cannot tell the embedding size of {self.files.source}: neither the graph nor "
                "config.json / 1_Pooling/config.json gives it."
            )
        return int(dim)

    def prompt(self, prompt: str | None, prompt_name: str | None) -> str:
        """The text put before every text, resolved as sentence-transformers resolves it (an
        explicit prompt wins over a name)."""
        if prompt is not None:
            if not isinstance(prompt, str):
                raise InvalidInputError(f"prompt must be a str, got {type(prompt).__name__}.")
            return prompt
        prompts = self.config.prompts
        if prompt_name is not None:
            if prompt_name not in prompts:
                raise InvalidInputError(
                    f"No prompt named {prompt_name!r}; this model's prompts are {sorted(prompts)}."
                )
            return prompts[prompt_name]
        default = self.config.default_prompt_name
        return prompts.get(default, "") if default is not None else ""

    def dimensions(self, truncate_dim: int | None) -> int | None:
        """``truncate_dim`` checked against the graph's size; None to keep every dimension."""
        if truncate_dim is None:
            return None
        return positive_int(truncate_dim, "truncate_dim", self.full_dimension)

    def encode(
        self,
        texts: Iterable[str],
        batch_size: int | None,
        normalize_embeddings: bool,
        show_progress_bar: bool | None,
        *,
        counts: bool = False,
        prompt: str = "",
        truncate_dim: int | None = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """The vectors, and with ``counts`` each text's token count (else an empty array)."""
        iterator, total = texts_of(texts, "encode")
        if prompt:  # non-str items pass unchanged, to be refused by index
            iterator = (prompt + t if isinstance(t, str) else t for t in iterator)
        batch_size = positive_int(
            self.default_batch_size if batch_size is None else batch_size,
            "batch_size",
            planner.MAX_BATCH_SIZE,
        )
        if self.cache is not None:
            items = list(iterator)
            if all(isinstance(t, str) for t in items):  # else refused by index, below
                out, tokens, missing = self.from_cache(items)
                if missing:
                    fresh = [items[row] for row in missing]
                    vectors, fresh_counts = self.compute(fresh, batch_size, show_progress_bar)
                    out[missing], tokens[missing] = vectors, fresh_counts
                return self.finish(out, normalize_embeddings, truncate_dim), (
                    tokens if counts else tokens[:0]
                )
            iterator, total = iter(items), len(items)
        out, tokens = self.run_texts(
            iterator,
            total,
            batch_size,
            show_progress_bar,
            counts=counts,
            normalize=normalize_embeddings and not self.config.normalize,
        )
        return self.finish(out, normalize_embeddings, truncate_dim, normalized=True), tokens

    def finish(
        self,
        out: npt.NDArray[np.float32],
        normalize_embeddings: bool,
        truncate_dim: int | None,
        *,
        normalized: bool = False,
    ) -> npt.NDArray[np.float32]:
        """The graph's output as a call asked for it: normalized (unless ``normalized`` says the
        runs did it) and cut to ``truncate_dim``."""
        if not normalized and normalize_embeddings and not self.config.normalize and len(out):
            out = l2_normalize(out)
        if truncate_dim is not None and truncate_dim < self.full_dimension:
            # As sentence-transformers: the model's output cut, then normalized if asked.
            out = np.ascontiguousarray(out[:, :truncate_dim])
            if normalize_embeddings:
                out = l2_normalize(out)
        return out

    @property
    def identity(self) -> str:
        """What the cache keys this encoder's vectors on: the files read (their sha256 from the
        export's manifest where they were checked against it, else their path, size, inode and
        change times), the variant and engine, and the settings read from the configs (length
        limit, lower-casing, pooling, normalization): two encoders share it only when they would
        give the same vectors."""
        if self._identity is None:
            variant = self.files.variant
            if self.backend != "onnx":
                variant = f"{variant}@{self.backend}"
            c = self.config
            read = (c.max_seq_length, c.do_lower_case, c.pooling, c.normalize, c.dimension)
            self._identity = files_identity(
                self.files, variant, verified=self.verified, settings=repr(read)
            )
        return self._identity

    def checked_texts(self, texts: Iterable[str], prompt: str) -> list[str]:
        """``texts`` as a list of str with ``prompt`` before each, or the error naming the first
        that is not a str (what encode would raise). Unicode is checked when a run fails."""
        iterator, _ = texts_of(texts, "encode")
        items = list(iterator)
        check_texts(items, 0)
        return [prompt + t for t in items] if prompt else items

    def from_cache(
        self, texts: list[str]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], list[int]]:
        """The graph's output and token counts for ``texts`` as far as the cache holds them
        (rows of zeros elsewhere), and the rows it does not hold."""
        out = np.zeros((len(texts), self.full_dimension), dtype=np.float32)
        tokens = np.zeros(len(texts), dtype=np.int64)
        if self.cache is None:
            return out, tokens, list(range(len(texts)))
        missing = []
        for row, hit in enumerate(self.cache.get_many(self.identity, texts)):
            if hit is None:
                missing.append(row)
            else:
                out[row], tokens[row] = hit
        return out, tokens, missing

    def compute(
        self,
        texts: list[str],
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """``texts`` (checked str) through the graph, each distinct text once: the graph's
        output and token counts, held by the cache if there is one."""
        distinct = list(dict.fromkeys(texts))
        size = self.default_batch_size if batch_size is None else batch_size
        vectors, counts = self.run_texts(
            iter(distinct), len(distinct), size, show_progress_bar, counts=True, normalize=False
        )
        if self.cache is not None:
            self.cache.put_many(self.identity, distinct, vectors, counts)
        if len(distinct) == len(texts):
            return vectors, counts
        where = {text: row for row, text in enumerate(distinct)}
        rows = [where[text] for text in texts]
        return vectors[rows], counts[rows]

    def run_texts(
        self,
        iterator: Iterator[Any],
        total: int | None,
        batch_size: int,
        show_progress_bar: bool | None,
        *,
        counts: bool,
        normalize: bool,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """The texts through the graph, in runs: one full-size row per text (L2-normalized per
        run with ``normalize``), and with ``counts`` each text's token count."""
        runs = self.plan(iterator, batch_size)
        if self.overlap and (total is None or total > batch_size):
            runs = planner.prefetch(runs)
        made = planner.run_in_order(
            runs, self.run, parallel=self.parallel_runs, single=self.single_runner
        )
        try:
            return planner.collect(
                made,
                total,
                self.full_dimension,
                counts=counts,
                normalize=normalize,
                progress=_progress(show_progress_bar, total),
            )
        finally:
            runs.close()  # stops the producer thread at once if the graph raised

    def warm_up(self, lengths: Iterable[int]) -> float:
        """Texts of each of ``lengths`` tokens (at most the model's limit) through the graph,
        alone and in a batch of four (what is planned per shape is the width); the cache is not
        touched. Returns the seconds it took."""
        started = time.perf_counter()
        limit = self.config.max_seq_length
        widths = sorted({min(positive_int(n, "length", 1 << 20), limit) for n in lengths})
        for size in widths:
            text = " ".join(["word"] * max(size - 2, 1))  # [CLS] word ... [SEP]
            for texts in ([text], [text] * 4):
                self.run_texts(iter(texts), len(texts), 4, False, counts=False, normalize=False)
        return time.perf_counter() - started

    def count_tokens(self, texts: Iterable[str]) -> npt.NDArray[np.int64]:
        """Each text's token count, truncated, special tokens included."""
        tokenized = self.tokenized(texts, "count_tokens")
        return np.array([len(e) for _, chunk in tokenized for e in chunk], dtype=np.int64)

    def token_ids(self, texts: Iterable[str]) -> list[list[int]]:
        """Each text's token ids, truncated, special tokens included."""
        tokenized = self.tokenized(texts, "token_ids")
        return [list(encoding.ids) for _, chunk in tokenized for encoding in chunk]

    def truncated(self, texts: Iterable[str]) -> npt.NDArray[np.bool_]:
        """For each text, whether the model's limit cut it."""
        flags = [
            self.tokenizer.truncated(text, encoding)
            for chunk, encodings in self.tokenized(texts, "truncated")
            for text, encoding in zip(chunk, encodings, strict=True)
        ]
        return np.array(flags, dtype=np.bool_)

    def tokenized(
        self, texts: Iterable[str], method: str
    ) -> Generator[tuple[list[str], list[Any]], None, None]:
        iterator, _ = texts_of(texts, method)
        offset = 0
        while chunk := list(islice(iterator, 1024)):
            check_texts(chunk, offset)
            yield chunk, self.tokenize(chunk, offset)
            offset += len(chunk)

    def tokenize(
        self, chunk: list[Any], offset: int, positions: list[int] | None = None
    ) -> list[Any]:
        """Tokenize texts (checked to be str by the caller), naming the text (by its index in the
        call) that fails: ``chunk[i]`` is text ``offset + i``, or ``offset + positions[i]``."""
        try:
            return self.tokenizer.tokenize(chunk)
        except TypeError:
            # The tokenizer refuses a whole batch for one str that is not valid Unicode without
            # saying which: find it. Only this failing path pays for the search.
            invalid_unicode(chunk, offset, positions)
            raise

    def plan(self, texts: Iterator[Any], batch_size: int) -> Generator[planner.Run, None, None]:
        """The runs of one call (see :func:`planner.plan`): on the CPU at most
        the profile's ``tokens_per_run`` padded tokens a run; with overlap, tokenized a batch
        at a time."""
        return planner.plan(
            texts,
            batch_size,
            tokenize=self.tokenize,
            pad=self.tokenizer.pad,
            check=check_texts,
            cap=self.profile.settings.tokens_per_run,
            by_batch=self.overlap,
        )

    def single_runner(self) -> Callable[[Batch], npt.NDArray[np.float32]]:
        """A runner of one batch on the single-threaded session (see planner.run_in_order)."""
        return partial(self.run, session=self.single_session())

    def single_session(self) -> GraphSession:
        """The single-threaded session for runs made at once (one more session over the same
        graph: ~13 MiB for the int8 graph, made at the first call of several runs)."""
        with self._single_lock:
            if self.single is None:
                self.single = GraphSession(
                    self.files.graph,
                    providers=self.providers,
                    threads=1,
                    spinning=False,
                    settings=self.profile.settings,
                )
            return self.single

    def replayed(self) -> ReplayedGraph | None:
        """The captured graph for one text, made at its first use; None if it cannot be."""
        with self._single_lock:
            if self.replay is None and self.use_replay:
                try:
                    self.replay = ReplayedGraph(self.files.graph, self.providers)
                except Exception as exc:  # noqa: BLE001 -- the usual path still runs the query
                    self.use_replay = False
                    warnings.warn(
                        f"Could not capture the graph for one-text runs ({exc}); queries take "
                        "the usual path. GistEncoder(cuda_graph=False) skips the attempt.",
                        RuntimeWarning,
                        stacklevel=8,  # the caller of encode()
                    )
            return self.replay

    def run(self, batch: Batch, session: GraphSession | None = None) -> npt.NDArray[np.float32]:
        if self.use_replay and session is None and batch.input_ids.shape[0] == 1:
            replay = self.replayed()
            if replay is not None and replay.fits(batch):
                return replay.run(batch)
        result = (session or self.session).run(batch)
        if not self.session.info.pooled:
            result = pool(result, batch.attention_mask, self.config.pooling)
            if self.config.normalize:
                result = l2_normalize(result)
        return result


def _progress(show: bool | None, total: int | None) -> Any:
    if not show:
        return None
    # tqdm comes with huggingface-hub; imported only when a bar is asked for.
    from tqdm.auto import tqdm

    return tqdm(desc="Encoding", unit="text", total=total)
