"""Stage 5: the encoder users call: texts in, one float32 vector per text out."""

from __future__ import annotations

import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import heap, options, planner
from .cache import EmbeddingCache, as_cache
from .device import OPENVINO, DeviceProfile, profile_for
from .errors import GistOnnxError, InvalidInputError, ModelConfigError
from .inputs import check_texts, invalid_unicode, positive_int, texts_of
from .model import (
    DEFAULT_MODEL,
    IntegrityCheck,
    ModelConfig,
    ModelFiles,
    files_identity,
    files_read,
    files_to_ship,
    read_config,
    resolve,
    writable_by_others,
)
from .model.configs import check_graph_pooling
from .pooling import l2_normalize, pool
from .precision import quantize_embeddings
from .session import (
    GraphSession,
    ReplayedGraph,
    choose_providers,
    choose_threads,
    provider_names,
    usable_cpus,
)
from .tokenizer import Batch, TextTokenizer, load_tokenizer

if TYPE_CHECKING:
    from .batching import AsyncGistEncoder
    from .engine_openvino import OpenVINOSession


# What warm_up runs by default: a query's width up to the longest run (the CPU's token budget).
WARM_UP_LENGTHS = (16, 32, 64, 128, 256)


class GistEncoder:
    """Encode texts with GIST-all-MiniLM-L6-v2 (or any BERT sentence-transformers model) in ONNX.

    Args:
        model: a local folder (written by ``gist-onnx export``, or any folder holding a graph,
            the tokenizer and the sentence-transformers configs) or a hub repo id.
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
        variant, provider, max_seq_length, dimension, pooling, source, threads: what was
            chosen.
        profile: the :class:`~gist_onnx.device.DeviceProfile`: every choice made for the
            device (threads, run sizes, padding, the int8 form), in one place.
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
        self.cache: EmbeddingCache | None = as_cache(cache)
        self.backend: str = _check_backend(backend, variant, device, providers)
        chosen_providers = (
            [OPENVINO] if backend == "openvino" else choose_providers(device, providers)
        )
        resolved_threads = choose_threads(threads, stacklevel=3)
        # Every device choice, made once: see gist_onnx.device.
        self.profile: DeviceProfile = profile_for(
            provider_names(chosen_providers)[0],
            resolved_threads or usable_cpus(),
            int8_form=int8_form or options.int8_form(),
        )
        self.files: ModelFiles = resolve(
            model,
            "fp32" if variant is None else variant,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            int8_form=self.profile.int8.form,
        )
        self._warn_if_writable()
        integrity = IntegrityCheck(self.files)
        # Whether the files read were checked against the manifest's sha256 (the cache's key
        # may then name them by it; else by what the file system says of them).
        self._verified = bool(verify_files)
        if verify_files:
            integrity.start()
        try:
            self._load_stages(chosen_providers, resolved_threads, spinning)
        except GistOnnxError:
            integrity.wait()  # a corrupted file is the likelier cause: name it if so
            raise
        integrity.wait()
        self._full_dimension = self._check_graph()
        # The vectors' size: the graph's, or truncate_dim.
        self.truncate_dim: int | None = self._dimensions(truncate_dim)
        self.dimension: int = self.truncate_dim or self._full_dimension
        settings = self.profile.settings
        self.overlap: bool = settings.overlap if overlap is None else bool(overlap)
        # encode()'s batch_size when the call gives none.
        self.default_batch_size: int = settings.default_batch
        self.tokenizer.pad_multiple = settings.pad_multiple
        # CPU threads: what was asked (capped at the usable CPUs), else one per usable CPU.
        workers = self.profile.threads
        self.threads: int = workers
        # Runs at once for calls of several runs (CPU only): one single-threaded session shared
        # by that many Python threads (ONNX Runtime releases the GIL and allows concurrent runs).
        wanted = workers > 1 if parallel_runs is None else bool(parallel_runs)
        self.parallel_runs: int = workers if wanted and settings.parallel_runs else 1
        self._single: GraphSession | None = None  # made at the first call that needs it
        self._single_lock = threading.Lock()
        self._providers = chosen_providers
        # One text through a captured CUDA graph (see ReplayedGraph), made at the first query.
        self._use_replay = (
            settings.cuda_graph and self.session.info.pooled and cuda_graph is not False
        )
        self._replay: ReplayedGraph | None = None
        self._identity: str | None = None
        # aencode's batcher on each event loop it is called from.
        self._async: weakref.WeakKeyDictionary[Any, AsyncGistEncoder] = weakref.WeakKeyDictionary()
        self._async_lock = threading.Lock()

    def _warn_if_writable(self) -> None:
        exposed = writable_by_others(self.files)
        if exposed:
            warnings.warn(
                f"{', '.join(map(str, exposed))} can be written by every user of this machine: "
                "anyone could replace the model's weights. Fix: chmod -R o-w "
                f"{self.files.folder}",
                UserWarning,
                stacklevel=3,  # the caller of GistEncoder()
            )

    def _load_stages(
        self, providers: list[Any], threads: int | None, spinning: bool | None
    ) -> None:
        """The configs, the tokenizer and the session, in that order."""
        self.config: ModelConfig = read_config(
            self.files.folder, modules=self.files.modules, manifest=self.files.manifest
        )
        self.tokenizer: TextTokenizer = load_tokenizer(
            self.files.folder,
            max_length=self.config.max_seq_length,
            do_lower_case=self.config.do_lower_case,
            config=self.config,
        )
        self.session: GraphSession | OpenVINOSession
        if self.backend == "openvino":
            from .engine_openvino import OpenVINOSession

            self.session = OpenVINOSession(
                self.files.graph, variant=self.files.variant, threads=self.profile.threads
            )
            return
        self.session = GraphSession(
            self.files.graph,
            providers=providers,
            threads=threads,
            spinning=spinning,
            settings=self.profile.settings,
        )

    def _check_graph(self) -> int:
        """The graph against the folder's configs (its vector size, its pooling); returns the
        vector size."""
        graph_dim = self.session.info.dimension
        if self.config.dimension and graph_dim and graph_dim != self.config.dimension:
            raise ModelConfigError(
                f"The graph {self.files.graph} returns vectors of {graph_dim} but the model folder "
                f"says {self.config.dimension}; the graph belongs to another model. Re-export it."
            )
        # Whether the configs' pooling was checked against a record of the graph's own.
        self._pooling_checked = True
        if self.session.info.pooled:
            info = self.session.info
            self._pooling_checked = check_graph_pooling(
                self.config, self.files, info.pooling, info.normalize
            )
        dim = graph_dim or self.config.dimension
        if dim is None:
            raise ModelConfigError(
                f"Cannot tell the embedding size of {self.files.source}: neither the graph nor "
                "config.json / 1_Pooling/config.json gives it."
            )
        return int(dim)

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
        chosen = self.profile.int8
        if self.files.int8_form == chosen.form:
            return chosen.reason
        if self.files.int8_form is None:
            return f"{self.files.graph.name} as stored (no record of its form)"
        return (
            f"{chosen.form} chosen ({chosen.reason}), but the folder has only the "
            f"{self.files.int8_form} form: re-export it for both"
        )

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
        vectors, _ = self._encode(
            texts,
            batch_size,
            normalize_embeddings,
            show_progress_bar,
            prompt=self._prompt(prompt, prompt_name),
            truncate_dim=self._dimensions(truncate_dim) or self.truncate_dim,
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

                # Let go of when its loop ends (asyncio.run cancels the batcher's worker then):
                # else every loop would keep a batcher and its graph thread forever.
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
        alone and in a batch, so
        that the first real calls do not pay for new input shapes (ONNX Runtime plans and, with
        CUDA, picks kernels per shape) or for the second session of parallel runs. The cache,
        if any, is not touched. Returns the seconds it took."""
        started = time.perf_counter()
        batch = 4  # a batch, not a large one: what is planned per shape is the width
        widths = sorted(
            {min(positive_int(n, "length", 1 << 20), self.max_seq_length) for n in lengths}
        )
        for size in widths:
            text = " ".join(["word"] * max(size - 2, 1))  # [CLS] word ... [SEP]
            for texts in ([text], [text] * batch):
                self._graph(iter(texts), len(texts), batch, False, counts=False, normalize=False)
        return time.perf_counter() - started

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

    def _prompt(self, prompt: str | None, prompt_name: str | None) -> str:
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

    def _dimensions(self, truncate_dim: int | None) -> int | None:
        """``truncate_dim`` checked against the graph's size; None to keep every dimension."""
        if truncate_dim is None:
            return None
        return positive_int(truncate_dim, "truncate_dim", self._full_dimension)

    def encode_with_token_counts(
        self, texts: Iterable[str], batch_size: int | None = None, normalize_embeddings: bool = True
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """:meth:`encode`'s vectors and, from the same tokenization, :meth:`count_tokens`'s
        counts: what an API reporting token usage needs, without tokenizing twice."""
        return self._encode(
            texts,
            batch_size,
            normalize_embeddings,
            None,
            counts=True,
            prompt=self._prompt(None, None),
            truncate_dim=self.truncate_dim,
        )

    def _encode(
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
                out, tokens, missing = self._from_cache(items)
                if missing:
                    fresh = [items[row] for row in missing]
                    vectors, fresh_counts = self._compute(fresh, batch_size, show_progress_bar)
                    out[missing], tokens[missing] = vectors, fresh_counts
                return self._finish(out, normalize_embeddings, truncate_dim), (
                    tokens if counts else tokens[:0]
                )
            iterator, total = iter(items), len(items)
        out, tokens = self._graph(
            iterator,
            total,
            batch_size,
            show_progress_bar,
            counts=counts,
            normalize=normalize_embeddings and not self.config.normalize,
        )
        return self._finish(out, normalize_embeddings, truncate_dim, normalized=True), tokens

    def _finish(
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
        if truncate_dim is not None and truncate_dim < self._full_dimension:
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
            variant = self.variant if self.backend == "onnx" else f"{self.variant}@{self.backend}"
            c = self.config
            read = (c.max_seq_length, c.do_lower_case, c.pooling, c.normalize, c.dimension)
            self._identity = files_identity(
                self.files, variant, verified=self._verified, settings=repr(read)
            )
        return self._identity

    def _checked_texts(self, texts: Iterable[str], prompt: str) -> list[str]:
        """``texts`` as a list of str with ``prompt`` before each, or the error naming the first
        that is not a str (what encode would raise). Unicode is checked when a run fails."""
        iterator, _ = texts_of(texts, "encode")
        items = list(iterator)
        check_texts(items, 0)
        return [prompt + t for t in items] if prompt else items

    def _from_cache(
        self, texts: list[str]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], list[int]]:
        """The graph's output and token counts for ``texts`` as far as the cache holds them
        (rows of zeros elsewhere), and the rows it does not hold."""
        out = np.zeros((len(texts), self._full_dimension), dtype=np.float32)
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

    def _compute(
        self,
        texts: list[str],
        batch_size: int | None = None,
        show_progress_bar: bool | None = None,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """``texts`` (checked str) through the graph, each distinct text once: the graph's
        output and token counts, held by the cache if there is one."""
        distinct = list(dict.fromkeys(texts))
        size = self.default_batch_size if batch_size is None else batch_size
        vectors, counts = self._graph(
            iter(distinct), len(distinct), size, show_progress_bar, counts=True, normalize=False
        )
        if self.cache is not None:
            self.cache.put_many(self.identity, distinct, vectors, counts)
        if len(distinct) == len(texts):
            return vectors, counts
        where = {text: row for row, text in enumerate(distinct)}
        rows = [where[text] for text in texts]
        return vectors[rows], counts[rows]

    def _graph(
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
        runs = self._plan(iterator, batch_size)
        if self.overlap and (total is None or total > batch_size):
            runs = planner.prefetch(runs)
        made = planner.run_in_order(
            runs, self._run, parallel=self.parallel_runs, single=self._single_runner
        )
        progress = _progress(show_progress_bar, total)
        # One output array, filled in place: allocated whole when the number of texts is known,
        # else grown as chunks arrive (see planner.grow), so that it is never held twice.
        out = np.empty((total or 0, self._full_dimension), dtype=np.float32)
        tokens = np.zeros(len(out) if counts else 0, dtype=np.int64)
        filled = start = ran = 0
        try:
            for run, vectors in made:
                ran += run.batch.input_ids.size
                if run.chunk:
                    start, filled = filled, filled + run.chunk
                    if filled > len(out):
                        out = planner.grow(out, filled)
                        if counts:
                            tokens.resize(len(out), refcheck=False)
                rows = [start + row for row in run.rows]
                out[rows] = l2_normalize(vectors) if normalize else vectors
                if counts:
                    tokens[rows] = run.batch.attention_mask.sum(axis=1)
                if progress is not None:
                    progress.update(len(rows))
        finally:
            made.close()  # no run outlives the call, even when one raised
            runs.close()  # stops the producer thread at once if the graph raised
            if progress is not None:
                progress.close()
            if ran >= heap.TRIM_AFTER_TOKENS:
                heap.trim()  # what the call used, back to the system (see gist_onnx.heap)
        if filled < len(out):  # an iterable whose len() promised more than it gave
            out.resize((filled, self._full_dimension), refcheck=False)
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
        iterator, _ = texts_of(texts, method)
        offset = 0
        while chunk := list(islice(iterator, 1024)):
            check_texts(chunk, offset)
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
            # The tokenizer refuses a whole batch for one str that is not valid Unicode without
            # saying which: find it. Only this failing path pays for the search.
            invalid_unicode(chunk, offset, positions)
            raise

    def _plan(self, texts: Iterator[Any], batch_size: int) -> Generator[planner.Run, None, None]:
        """The runs of one call (see :func:`planner.plan`): on the CPU at most
        the profile's ``tokens_per_run`` padded tokens a run; with overlap, tokenized a batch
        at a time."""
        return planner.plan(
            texts,
            batch_size,
            tokenize=self._tokenize,
            pad=self.tokenizer.pad,
            check=check_texts,
            cap=self.profile.settings.tokens_per_run,
            by_batch=self.overlap,
        )

    def _single_runner(self) -> Callable[[Batch], npt.NDArray[np.float32]]:
        """A runner of one batch on the single-threaded session (see planner.run_in_order)."""
        return partial(self._run, session=self._single_session())

    def _single_session(self) -> GraphSession:
        """The single-threaded session for runs made at once (one more session over the same
        graph: ~13 MiB for the int8 graph, made at the first call of several runs)."""
        with self._single_lock:
            if self._single is None:
                self._single = GraphSession(
                    self.files.graph,
                    providers=self._providers,
                    threads=1,
                    spinning=False,
                    settings=self.profile.settings,
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


BACKENDS = ("onnx", "openvino")


def _check_backend(backend: str, variant: str | None, device: str, providers: Any) -> str:
    """``backend`` checked against the other arguments: OpenVINO runs the fp32 graph (as fp32 or
    bf16) on the CPU; bf16 runs only there."""
    if backend not in BACKENDS:
        raise ModelConfigError(
            f"Unknown backend {backend!r}; use 'onnx' (ONNX Runtime) or 'openvino' (the "
            "openvino extra)."
        )
    if backend == "openvino":
        if variant not in (None, "fp32", "bf16"):
            raise ModelConfigError(
                f"backend='openvino' runs the fp32 graph as variant 'fp32' or 'bf16', not "
                f"{variant!r}; the int8 and fp16 graphs run on ONNX Runtime (backend='onnx')."
            )
        if device not in ("cpu", "auto") or providers is not None:
            raise ModelConfigError(
                "backend='openvino' runs on the CPU: leave device and providers out, or use "
                "backend='onnx' for CUDA."
            )
    elif variant == "bf16":
        raise ModelConfigError(
            "variant='bf16' is the fp32 graph computed in bfloat16 by OpenVINO: pass "
            "backend='openvino' (pip install 'gist-onnx[openvino]'), or use 'fp32' or 'int8'."
        )
    return backend


def _progress(show: bool | None, total: int | None) -> Any:
    if not show:
        return None
    # tqdm comes with huggingface-hub; imported only when a bar is asked for.
    from tqdm.auto import tqdm

    return tqdm(desc="Encoding", unit="text", total=total)
