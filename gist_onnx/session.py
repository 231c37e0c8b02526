"""Stage 3: the ONNX Runtime session: execution providers, threads, and what the graph returns.

Two graph forms run here: the export's graph, which pools and normalizes inside and returns
``sentence_embedding`` (batch, dim), and a plain graph returning ``last_hidden_state``
(batch, seq, dim), which the encoder pools in numpy.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .device import CPU, CUDA, ProviderSettings, settings_for
from .errors import ModelConfigError, ProviderUnavailableError
from .tokenizer import Batch

DEVICES = ("cpu", "cuda", "auto")

# Distributions that all install the same ``onnxruntime`` import package.
_ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu")

GPU_FIX = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'onnxruntime-gpu>=1.20'"


def installed_runtimes() -> list[str]:
    """The ONNX Runtime distributions installed; more than one overwrite each other's files."""
    import importlib.metadata  # only on error paths: it costs cold start otherwise

    found = []
    for name in _ORT_DISTRIBUTIONS:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def _clash_note() -> str:
    runtimes = installed_runtimes()
    if len(runtimes) > 1:
        return (
            f" Both {' and '.join(runtimes)} are installed; they ship the same `onnxruntime` "
            f"package and overwrite each other, so the CPU build may have won. Fix: `{GPU_FIX}`."
        )
    if "onnxruntime-gpu" not in runtimes:
        return f" Only the CPU build of ONNX Runtime is installed. For CUDA: `{GPU_FIX}`."
    return (
        " onnxruntime-gpu is installed but could not load CUDA: check that the CUDA and cuDNN "
        "libraries its release needs are installed (onnxruntime.preload_dlls() loads them from "
        "the nvidia-* pip packages)."
    )


def provider_names(providers: list[Any]) -> list[str]:
    """The names in a providers list, whose items are names or (name, options) tuples."""
    return [p[0] if isinstance(p, tuple) else p for p in providers]


def _check_provider_item(item: Any) -> None:
    """One item of a providers list: a name, or a (name, options) pair whose options map names
    to strings, numbers or booleans, as ONNX Runtime takes them. ONNX Runtime itself refuses
    anything else by falling back to the CPU with a banner on stdout, which a caller never
    sees as an error."""
    example = "for example 'CPUExecutionProvider' or ('CUDAExecutionProvider', {'device_id': 0})"
    if isinstance(item, str):
        return
    if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
        raise ProviderUnavailableError(
            f"Each provider is a name or a (name, options) pair, got {item!r}; {example}."
        )
    name, options = item
    if not isinstance(options, dict):
        raise ProviderUnavailableError(
            f"{name}'s options must be a dict of option names to values, got {options!r}; "
            f"{example}."
        )
    for key, value in options.items():
        if not isinstance(key, str) or not isinstance(value, (str, int, float, bool)):
            raise ProviderUnavailableError(
                f"{name}'s option {key!r}: {value!r} is not a name with a string, number or "
                f"boolean value, which is what ONNX Runtime takes."
            )


def _check_options_taken(session: Any, providers: list[Any]) -> None:
    """Every option asked of a provider the session kept is one that provider has. ONNX Runtime
    ignores the rest without a word (the CPU provider, which reports none, takes none)."""
    effective: dict[str, dict[str, str]] = session.get_provider_options()
    for item in providers:
        if not isinstance(item, tuple) or item[0] not in effective or not item[1]:
            continue
        name, options = item
        known = effective[name]
        unknown = sorted(set(options) - set(known))
        if unknown:
            has = f"the options it has are {', '.join(sorted(known))}" if known else "it has none"
            raise ProviderUnavailableError(
                f"{name} has no option {', '.join(map(repr, unknown))} in this ONNX Runtime "
                f"(it would be ignored); {has}."
                + (" Threads are GistEncoder(threads=N)." if name == CPU else "")
            )


def _banner_free_session(graph: Path, options: Any, providers: list[Any], **kwargs: Any) -> Any:
    """``onnxruntime.InferenceSession``, except that where ONNX Runtime would reject the
    providers' options, print a banner on stdout and load on the CPU instead, this raises.
    (ONNX Runtime offers no switch for that fallback while it builds a session.)"""
    import io

    import onnxruntime as ort

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        session = ort.InferenceSession(
            str(graph), sess_options=options, providers=providers, **kwargs
        )
    text = printed.getvalue()
    if "EP Error" in text:
        reason = next(
            (
                line.removeprefix("EP Error").strip()
                for line in text.splitlines()
                if line.startswith("EP Error ")
            ),
            text.strip(),
        )
        raise ProviderUnavailableError(
            f"ONNX Runtime refused the providers {provider_names(providers)} with these options "
            f"(and would have fallen back to the CPU): {reason}"
        )
    if text:
        sys.stdout.write(text)  # anything else printed meanwhile, passed on
    return session


def choose_providers(device: str, providers: list[Any] | str | None) -> list[Any]:
    """The execution providers to ask for, from ``device`` unless ``providers`` names them (a
    list; one provider alone, a name or a (name, options) pair, is taken as a list of one)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if isinstance(providers, (str, tuple)):
        providers = [providers]  # one provider, as a name or a (name, options) pair
    if providers is not None:
        if not isinstance(providers, list) or not providers:
            raise ProviderUnavailableError(
                f"providers must be a non-empty list of provider names or (name, options) "
                f"pairs, got {providers!r}; for example ['CPUExecutionProvider']."
            )
        for item in providers:
            _check_provider_item(item)
        names = provider_names(providers)
        missing = [n for n in names if n not in available]
        if missing:
            raise ProviderUnavailableError(
                f"Execution providers {missing} are not available; this ONNX Runtime has "
                f"{available}." + (_clash_note() if CUDA in missing else "")
            )
        return list(providers)
    if device not in DEVICES:
        raise ProviderUnavailableError(
            f"Unknown device {device!r}; use one of {', '.join(DEVICES)}."
        )
    if device == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if device == "cuda":
        raise ProviderUnavailableError(
            f"device='cuda' needs {CUDA}, but this ONNX Runtime has only {available}."
            + _clash_note()
            + " Or pass device='cpu' (or 'auto' to fall back to the CPU)."
        )
    if len(installed_runtimes()) > 1:
        warnings.warn(
            "device='auto' runs on the CPU:" + _clash_note(), RuntimeWarning, stacklevel=3
        )
    return [CPU]


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota (a
    container's or a function's ``--cpus``), which ONNX Runtime's own default does not read."""
    import math
    import os

    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def choose_threads(threads: Any, stacklevel: int = 4) -> int | None:
    """ONNX Runtime's intra-op threads: ``threads`` checked and capped at the usable CPUs; by
    default ONNX Runtime's own choice, unless the process may use fewer CPUs than the machine
    has (a container, a pinned process), where one thread per usable CPU avoids oversubscribing.

    Measured: ``threads=1000`` took 55 s to create the session and made a one-text encode 100x
    slower, so more threads than usable CPUs are capped, with a warning.
    """
    import operator
    import os

    usable = usable_cpus()
    if threads is None:
        return usable if usable < (os.cpu_count() or usable) else None
    try:
        number = None if isinstance(threads, bool) else operator.index(threads)
    except TypeError:
        number = None
    if number is None or number < 1:
        raise ModelConfigError(f"threads must be a positive integer, got {threads!r}.")
    if number > usable:
        warnings.warn(
            f"threads={number} is more than the {usable} CPUs this process may use; using "
            f"{usable} (more threads only contend for the same cores).",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
        return usable
    return number


@dataclass(frozen=True)
class GraphInfo:
    """What a graph takes and returns."""

    inputs: tuple[str, ...]
    output: str
    pooled: bool
    dimension: int | None
    # How a graph that pools inside pools, as its ONNX metadata records (None where it does not).
    pooling: str | None = None
    normalize: bool | None = None


# The ONNX metadata keys in which the export records how a graph pools (read here, written by
# gist_onnx.export), so that the graph itself says what it does, whatever files travel with it.
METADATA_POOLING = "gist_onnx.pooling"
METADATA_NORMALIZE = "gist_onnx.normalize"


_KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def inspect_graph(session: Any) -> GraphInfo:
    """Find which output to read and whether it is already pooled."""
    inputs = tuple(i.name for i in session.get_inputs())
    unknown = [name for name in inputs if name not in _KNOWN_INPUTS]
    if unknown or "input_ids" not in inputs:
        raise ModelConfigError(
            f"The graph takes inputs {list(inputs)}; gist-onnx feeds only {list(_KNOWN_INPUTS)} "
            "(input_ids required). Export it with `gist-onnx export`."
        )
    outputs = {o.name: o for o in session.get_outputs()}
    for name in ("sentence_embedding", "last_hidden_state", "token_embeddings"):
        if name in outputs:
            chosen = outputs[name]
            break
    else:
        chosen = next(iter(outputs.values()))
    rank = len(chosen.shape)
    if rank not in (2, 3):
        raise ModelConfigError(
            f"The graph's output {chosen.name!r} has shape {chosen.shape}; gist-onnx reads a "
            "(batch, dim) sentence embedding or (batch, seq, dim) token vectors."
        )
    last = chosen.shape[-1]
    recorded = dict(session.get_modelmeta().custom_metadata_map)
    normalize = recorded.get(METADATA_NORMALIZE)
    return GraphInfo(
        inputs=inputs,
        output=chosen.name,
        pooled=rank == 2,
        dimension=last if isinstance(last, int) else None,
        pooling=recorded.get(METADATA_POOLING),
        normalize=None if normalize not in ("true", "false") else normalize == "true",
    )


class GraphSession:
    """An ONNX Runtime session over one graph, fed from a :class:`Batch`, with the settings of
    its provider (:func:`gist_onnx.device.settings_for`, unless ``settings`` gives them)."""

    def __init__(
        self,
        graph: Path,
        *,
        providers: list[Any],
        threads: int | None = None,
        spinning: bool | None = None,
        settings: ProviderSettings | None = None,
    ) -> None:
        import onnxruntime as ort

        asked = provider_names(providers)
        settings = settings or settings_for(asked[0])
        if settings.preload_dlls:
            preload = getattr(ort, "preload_dlls", None)
            if preload is not None:
                # Best effort: if CUDA still cannot load, the session check below says so.
                with contextlib.suppress(Exception):
                    preload()
        options = ort.SessionOptions()
        threads = choose_threads(threads)
        if threads is not None:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        if not (settings.spinning if spinning is None else spinning):
            # With a GPU the CPU threads only feed it, and in a server the event loop needs
            # the cores between runs: threads that spin after each run would take them from the
            # tokenizer preparing the next batch (GistEncoder's overlap) or from the requests.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = _banner_free_session(
                graph, options, providers, disabled_optimizers=list(settings.disabled_optimizers)
            )
        except ProviderUnavailableError:
            raise
        except Exception as exc:
            raise ModelConfigError(
                f"ONNX Runtime could not load {graph}: {exc}. Re-download or re-export the graph "
                f"(an exported graph keeps its weights in {graph.name}.data beside it)."
            ) from exc
        _check_options_taken(self.session, providers)
        self.providers: list[str] = list(self.session.get_providers())
        if asked[0] != CPU and asked[0] not in self.providers:
            raise ProviderUnavailableError(
                f"{asked[0]} was requested but the session fell back to {self.providers}."
                + (_clash_note() if asked[0] == CUDA else "")
            )
        self.info = inspect_graph(self.session)

    @property
    def provider(self) -> str:
        """The provider that runs the graph (the first one the session kept)."""
        return self.providers[0]

    def run(self, batch: Batch) -> npt.NDArray[np.float32]:
        """Run the graph; returns (batch, dim) if pooled inside, else (batch, seq, dim)."""
        feed = {name: getattr(batch, name) for name in self.info.inputs}
        (out,) = self.session.run([self.info.output], feed)
        return np.asarray(out, dtype=np.float32)


# One text on CUDA: ONNX Runtime launches the graph's kernels one by one from the host, and that
# is most of a query's time (H200, fp16: 0.56 ms in the graph alone, 0.81 ms encoded). Captured
# once as a CUDA graph over fixed (1, 32) inputs and replayed, the same query took 0.32 ms
# encoded, the same vector (max |diff| 0.0). 32 tokens hold a typical search query.
REPLAY_TOKENS = 32


class ReplayedGraph:
    """Runs one text at a time through input buffers of a fixed (1, ``length``) shape, bound
    once. With CUDA, ONNX Runtime captures the graph's kernels at the first runs and replays them
    after (its ``enable_cuda_graph``): a text is padded into the buffers, which the attention
    mask makes exact. On the CPU the same buffers run without a capture (the unit tests' path).
    Thread-safe: the buffers are shared, so runs take turns."""

    def __init__(self, graph: Path, providers: list[Any], length: int = REPLAY_TOKENS) -> None:
        import threading

        import onnxruntime as ort

        cuda = next((p for p in providers if provider_names([p]) == [CUDA]), None)
        if cuda is not None:
            options = dict(cuda[1]) if isinstance(cuda, tuple) else {}
            chosen: list[Any] = [(CUDA, {**options, "enable_cuda_graph": "1"})]
            device, device_id = "cuda", int(options.get("device_id", 0))
        else:
            chosen, device, device_id = [CPU], "cpu", 0
        graph_session = GraphSession(graph, providers=chosen, spinning=False)
        info = graph_session.info
        if not info.pooled or info.dimension is None:
            raise ModelConfigError(f"{graph} does not pool inside: it has no one fixed output.")
        self.session = graph_session.session
        self.length = length
        self._lock = threading.Lock()
        self._inputs = {
            name: ort.OrtValue.ortvalue_from_numpy(
                np.zeros((1, length), np.int64), device, device_id
            )
            for name in info.inputs
        }
        self._output = ort.OrtValue.ortvalue_from_shape_and_type(
            [1, info.dimension], np.float32, device, device_id
        )
        self._binding = self.session.io_binding()
        for name, value in self._inputs.items():
            self._binding.bind_ortvalue_input(name, value)
        self._binding.bind_ortvalue_output(info.output, self._output)
        # ONNX Runtime captures within the first runs (after its warm-up ones): done here, so
        # that a graph that cannot be captured fails here, where the encoder falls back.
        for _ in range(3):
            self.session.run_with_iobinding(self._binding)

    def fits(self, batch: Batch) -> bool:
        """Whether ``batch`` is one text of at most ``length`` tokens."""
        rows, tokens = batch.input_ids.shape
        return bool(rows == 1 and tokens <= self.length)

    def run(self, batch: Batch) -> npt.NDArray[np.float32]:
        """The graph's output for one text (see :meth:`fits`), shape (1, dim)."""
        tokens = batch.input_ids.shape[1]
        staged = {}
        for name in self._inputs:
            padded = np.zeros((1, self.length), np.int64)
            padded[:, :tokens] = getattr(batch, name)
            staged[name] = padded
        with self._lock:
            for name, value in self._inputs.items():
                value.update_inplace(staged[name])
            self.session.run_with_iobinding(self._binding)
            return np.array(self._output.numpy(), dtype=np.float32)
