"""Stage 5: the encoder users call: texts in, one float32 vector per text out."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import numpy as np
import numpy.typing as npt

from .cache import EmbeddingCache
from .device import DeviceProfile
from .engine import Engine, Session
from .errors import InvalidInputError
from .loading import load
from .model import DEFAULT_MODEL, ModelConfig, ModelFiles, files_read, files_to_ship
from .precision import quantize_embeddings
from .tokenizer import TextTokenizer

if TYPE_CHECKING:
    from .batching import AsyncGistEncoder


# warm_up by default: a query's width up to the longest run (the CPU's token budget).
WARM_UP_LENGTHS = (16, 32, 64, 128, 256)


T = TypeVar("T")


class _Engine(Generic[T]):
    """An attribute of the encoder's engine, read (and, where ``writable``, set) through the
    encoder."""

    def __init__(self, doc: str, *, writable: bool = False) -> None:
        self.__doc__, self.writable, self.name = doc, writable, ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> _Engine[T]: ...
    @overload
    def __get__(self, obj: GistEncoder, owner: type) -> T: ...
    def __get__(self, obj: GistEncoder | None, owner: type) -> T | _Engine[T]:
        if obj is None:
            return self
        value: T = getattr(obj.engine, self.name)
        return value

    def __set__(self, obj: GistEncoder, value: T) -> None:
        if not self.writable:
            raise AttributeError(f"GistEncoder.{self.name} is read-only")
        setattr(obj.engine, self.name, value)


class GistEncoder:
    """Encode texts with GIST-all-MiniLM-L6-v2 (or any BERT sentence-transformers model) in ONNX.

    Args:
        model: a local folder (written by ``gist-onnx export``, or any folder holding a graph,
            the tokenizer and the sentence-transformers configs) or a hub repo id; None (or
            nothing) for GIST-all-MiniLM-L6-v2 from the hub.
        variant: ``"fp32"`` (default), ``"int8"`` or ``"fp16"``: which graph of the folder to run;
            with ``backend="openvino"``, ``"fp32"`` or ``"bf16"`` (the fp32 graph computed in
            bfloat16 where the CPU has it: AMX, AVX-512 BF16).
        backend: ``"onnx"`` (default: ONNX Runtime) or ``"openvino"`` (the ``openvino`` extra:
            OpenVINO compiles the fp32 graph for the CPU; faster where the CPU computes bf16).
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
        revision: the hub revision (branch, tag or commit) to download.
        cache_dir: the hub cache to use (default: huggingface_hub's, ``HF_HUB_CACHE``).
        local_files_only: use only the hub cache, never the network (``HF_HUB_OFFLINE=1`` is
            respected as well).
        verify_files: check the files read against the sha256 sums of the folder's
            ``gist_onnx_manifest.json`` (the export writes it) and refuse a mismatch with
            :class:`ModelFilesError`. The check runs while the session loads; on by default.
        cache: keep the vectors of texts seen before and return them without a graph run: an
            :class:`~gist_onnx.EmbeddingCache` (bounded by entries and bytes; one may serve several
            encoders), a number of entries, or True for the defaults. Off by default. A cached
            vector is exactly the one the graph gave that text (a run in another batch gives it
            to float32 rounding); with a cache, ``encode`` reads its texts into a list before
            running them.
        int8_form: which form of the int8 graph runs: ``"auto"`` (default, or the
            ``GIST_ONNX_INT8_FORM`` variable): u8 x s8 products where ONNX Runtime computes them
            exactly and fastest (x86 with AVX-512 VNNI, AVX-VNNI or AMX; arm64), u8 x u8 where
            u8 x s8 would saturate (x86 without VNNI); ``"u8s8"`` or ``"u8u8"`` to force one.
            Both forms hold the same int8 levels: where both are exact, the same vectors.
            :meth:`describe` says which runs and why.
        truncate_dim: keep only the first ``truncate_dim`` dimensions of every vector, as
            sentence-transformers' ``truncate_dim`` does (:attr:`dimension` says it then).
            GIST was not trained for shorter vectors (it is not a Matryoshka model): they
            lose quality.

    Attributes:
        variant, provider, max_seq_length, dimension, pooling, source, threads: as chosen;
        profile: every device choice (:class:`~gist_onnx.device.DeviceProfile`).
        default_batch_size, overlap, parallel_runs: as chosen, and settable.
        tokenizer: ``tokenizer.pad_multiple`` rounds each run's width up (8 with CUDA, 1 on the
            CPU).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = DEFAULT_MODEL,
        *,
        variant: str | None = None,
        device: str = "cpu",
        providers: list[Any] | str | None = None,
        threads: int | None = None,
        overlap: bool | None = None,
        spinning: bool | None = None,
        parallel_runs: bool | None = None,
        cuda_graph: bool | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        verify_files: bool = True,
        truncate_dim: int | None = None,
        cache: EmbeddingCache | int | bool | None = None,
        int8_form: str | None = None,
        backend: str = "onnx",
    ) -> None:
        # The run machinery, which AsyncGistEncoder drives too (see gist_onnx.engine).
        self.engine: Engine = load(
            model,
            variant=variant,
            device=device,
            providers=providers,
            threads=threads,
            overlap=overlap,
            spinning=spinning,
            parallel_runs=parallel_runs,
            cuda_graph=cuda_graph,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            verify_files=verify_files,
            truncate_dim=truncate_dim,
            cache=cache,
            int8_form=int8_form,
            backend=backend,
            stacklevel=3,  # the caller of GistEncoder()
        )
        # aencode's batcher on each event loop it is called from.
        self._async: weakref.WeakKeyDictionary[Any, AsyncGistEncoder] = weakref.WeakKeyDictionary()
        self._async_lock = threading.Lock()

    # The engine's stages and choices, read through the encoder (overlap, parallel_runs and the
    # default batch size may be set too).
    files: _Engine[ModelFiles] = _Engine("the model's files: folder, graph, variant, manifest")
    config: _Engine[ModelConfig] = _Engine("the model folder's configs")
    tokenizer: _Engine[TextTokenizer] = _Engine("the text tokenizer")
    session: _Engine[Session] = _Engine("what runs the graph")
    profile: _Engine[DeviceProfile] = _Engine("every choice made for the device")
    backend: _Engine[str] = _Engine("'onnx' or 'openvino'")
    cache: _Engine[EmbeddingCache | None] = _Engine("the cache of vectors, or None")
    dimension: _Engine[int] = _Engine("the vectors' size: the graph's, or truncate_dim")
    truncate_dim: _Engine[int | None] = _Engine("the size vectors are cut to, or None")
    threads: _Engine[int] = _Engine("CPU threads")
    identity: _Engine[str] = _Engine("what the cache keys this encoder's vectors on")
    default_batch_size: _Engine[int] = _Engine("encode's batch_size by default", writable=True)
    overlap: _Engine[bool] = _Engine("tokenize while the graph runs", writable=True)
    parallel_runs: _Engine[int] = _Engine("graph runs at once for long calls", writable=True)

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
        if not self.engine.pooling_checked:
            where += ", unchecked"
        return f"{self.config.pooling} ({where})"

    @property
    def files_read(self) -> list[Path]:
        """The model's files this encoder read: graph, weights, tokenizer, configs, manifest."""
        return files_read(self.files)

    @property
    def files_to_ship(self) -> list[Path]:
        """What a deployment has to ship (``gist-onnx bundle`` copies exactly these):
        :attr:`files_read`, and for int8 every form of the graph, since the machine it lands on
        may run the other form."""
        return files_to_ship(self.files)

    @property
    def model_name(self) -> str:
        """The model's name: the hub repo id it was exported from or downloaded as, else the
        folder's name. Servers report it as the OpenAI ``model``."""
        return self.files.name

    @property
    def source(self) -> str:
        """Where the graph came from: a file path or ``repo/file`` on the hub."""
        return self.files.source

    @property
    def int8_form(self) -> str | None:
        """The int8 graph's products as they run: ``"u8s8"`` or ``"u8u8"``; None for fp32 and
        fp16, or for an int8 graph whose form no export recorded (a graph made elsewhere)."""
        return self.files.int8_form  # resolve() records one for int8 graphs only

    @property
    def int8_form_reason(self) -> str | None:
        """Why :attr:`int8_form` runs: the CPU's flags, an override, or the folder's files."""
        if self.variant != "int8":
            return None
        return self.profile.int8.reason_for(self.files.int8_form, self.files.graph.name)

    def describe(self) -> dict[str, Any]:
        """What runs and why, as plain data: the model, the graph and its variant and int8 form,
        and the device profile (provider, threads, run sizes, the CPU and its flags). The
        server logs it at start-up and ``gist-onnx info`` prints it."""
        return {
            "model": self.model_name,
            "source": self.source,
            "graph": self.files.graph.name,
            "variant": self.variant,
            "int8_form": self.int8_form,
            "int8_form_reason": self.int8_form_reason,
            "max_seq_length": self.max_seq_length,
            "dimension": self.dimension,
            "pooling": self.pooling,
            "parallel_runs": self.parallel_runs,
            "overlap": self.overlap,
            **{
                key: value
                for key, value in self.profile.describe().items()
                if not key.startswith("int8_form")
            },
            "provider": self.provider,
            "backend": self.backend,
            "precision": str(getattr(self.session, "precision", self.variant)),
        }

    def __repr__(self) -> str:
        form = f", int8_form={self.int8_form!r}" if self.int8_form else ""
        return (
            f"GistEncoder(source={self.source!r}, variant={self.variant!r}{form}, "
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
        prompt_name: str | None = None,
        prompt: str | None = None,
        truncate_dim: int | None = None,
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

        ``prompt`` (a string put before every text) or ``prompt_name`` (one of the model's
        prompts, from its config_sentence_transformers.json) as sentence-transformers takes them;
        without either, the model's default prompt if it names one. GIST needs none: its prompts
        are empty. ``truncate_dim`` keeps the first dimensions (this call's, else the encoder's),
        normalized again when ``normalize_embeddings``.
        """
        if convert_to_tensor or not convert_to_numpy:
            raise InvalidInputError(
                "gist-onnx returns numpy arrays (it never imports torch): drop convert_to_tensor "
                "/ convert_to_numpy=False and wrap the result with torch.from_numpy(...)."
            )
        vectors, _ = self.engine.encode(
            texts,
            batch_size,
            normalize_embeddings,
            show_progress_bar,
            prompt=self.engine.prompt(prompt, prompt_name),
            truncate_dim=self.engine.dimensions(truncate_dim) or self.truncate_dim,
        )
        return vectors if precision == "float32" else quantize_embeddings(vectors, precision)

    async def aencode(
        self,
        texts: Iterable[str],
        *,
        normalize_embeddings: bool = True,
        prompt: str | None = None,
        prompt_name: str | None = None,
        truncate_dim: int | None = None,
    ) -> npt.NDArray[np.float32]:
        """:meth:`encode` for coroutines: concurrent calls on one event loop share graph runs
        (an :class:`~gist_onnx.AsyncGistEncoder` per loop, made at the first call), the graph
        runs off the event loop, and each call gets the vectors :meth:`encode` gives its texts."""
        import asyncio  # here: asyncio costs the cold start ~10 ms

        loop = asyncio.get_running_loop()
        with self._async_lock:
            batcher = self._async.get(loop)
            if batcher is None:
                from .batching import AsyncGistEncoder

                # Let go of when its loop ends, or every loop would keep one and its thread.
                batcher = self._async[loop] = AsyncGistEncoder(
                    self, on_close=partial(self._async.pop, loop, None)
                )
        return await batcher.encode(
            texts,
            normalize_embeddings=normalize_embeddings,
            prompt=prompt,
            prompt_name=prompt_name,
            truncate_dim=truncate_dim,
        )

    def warm_up(self, lengths: Iterable[int] = WARM_UP_LENGTHS) -> float:
        """Run texts of each of ``lengths`` tokens (at most ``max_seq_length``) through the graph,
        alone and in a batch, so that the first real calls do not pay for new input shapes (ONNX
        Runtime plans and, with CUDA, picks kernels per shape) or for the second session of
        parallel runs. The cache, if any, is not touched. Returns the seconds it took."""
        return self.engine.warm_up(lengths)

    def encode_query(self, texts: Iterable[str], **kwargs: Any) -> npt.NDArray[Any]:
        """:meth:`encode` for search queries: the model's ``"query"`` prompt unless ``prompt`` or
        ``prompt_name`` says otherwise (sentence-transformers' ``encode_query``). GIST's is
        empty, so the vectors are :meth:`encode`'s."""
        if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None:
            kwargs["prompt_name"] = "query" if "query" in self.config.prompts else None
        return self.encode(texts, **kwargs)

    def encode_document(self, texts: Iterable[str], **kwargs: Any) -> npt.NDArray[Any]:
        """:meth:`encode` for the documents searched: the model's ``"document"`` prompt (else
        ``"passage"``, else ``"corpus"``) unless ``prompt`` or ``prompt_name`` says otherwise
        (sentence-transformers' ``encode_document``). GIST's is empty."""
        if kwargs.get("prompt") is None and kwargs.get("prompt_name") is None:
            names = ("document", "passage", "corpus")
            kwargs["prompt_name"] = next((n for n in names if n in self.config.prompts), None)
        return self.encode(texts, **kwargs)

    def encode_with_token_counts(
        self, texts: Iterable[str], batch_size: int | None = None, normalize_embeddings: bool = True
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """:meth:`encode`'s vectors and, from the same tokenization, :meth:`count_tokens`'s
        counts: what an API reporting token usage needs, without tokenizing twice."""
        return self.engine.encode(
            texts,
            batch_size,
            normalize_embeddings,
            None,
            counts=True,
            prompt=self.engine.prompt(None, None),
            truncate_dim=self.truncate_dim,
        )

    def similarity(
        self, a: npt.NDArray[np.floating[Any]], b: npt.NDArray[np.floating[Any]]
    ) -> npt.NDArray[np.float32]:
        """Cosine similarity of every row of ``a`` with every row of ``b``: shape (len(a),
        len(b)), as sentence-transformers' ``similarity`` (cosine, its default)."""
        from .util import cos_sim

        return cos_sim(a, b)

    def get_embedding_dimension(self) -> int:
        """The size of the vectors (sentence-transformers 6's name for :attr:`dimension`)."""
        return self.dimension

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
        return self.engine.count_tokens(texts)

    def token_ids(self, texts: Iterable[str]) -> list[list[int]]:
        """The token ids the model reads for each text (special tokens included, truncated)."""
        return self.engine.token_ids(texts)

    def truncated(self, texts: Iterable[str]) -> npt.NDArray[np.bool_]:
        """For each text, whether it is longer than :attr:`max_seq_length` tokens, so that its
        vector represents only its beginning (sentence-transformers truncates the same way)."""
        return self.engine.truncated(texts)
