"""The device profile: what the machine offers, and every choice the encoder makes from it.

One :class:`DeviceProfile` per encoder, made by :func:`profile_for` from the execution provider
and the CPU (:func:`cpu_info`). It holds, each with the measurement that chose it:

- how ONNX Runtime runs: threads, whether its threads spin, the graph rewrites left out;
- how the runs are cut: tokens a run, the batch size by default, the width's rounding;
- what runs beside the graph: tokenizing ahead (overlap), runs made at once, CUDA graphs;
- which form of the int8 graph runs on this CPU (:func:`choose_int8_form`).

A provider is one entry of :data:`PROVIDERS`; a provider not listed runs with
:data:`ACCELERATOR` (the settings of a device that is not this CPU), never silently with the
CPU's.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import ModelConfigError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

# --- How runs are cut -------------------------------------------------------------------------
# On the CPU, at most this many (padded) tokens go through the graph in one run, whatever
# batch_size says. Measured on 2 cores: runs of 256-512 tokens keep the activations in cache and
# encoded 1.2-1.5x more short texts per second than runs of 4,096 (batch_size=128 x 32 tokens);
# 256 rather than 512 puts one long text in a run (its 12 attention matrices are 3 MB at 256
# tokens): int8 passages +3 to +6%, short texts and fp32 the same. A text's vector does not
# depend on its batch, so this changes speed only. With CUDA, batch_size alone sizes a run.
CPU_TOKENS_PER_RUN = 256
# encode()'s batch_size when none is given. The CPU caps a run at 256 tokens anyway. On an H200,
# fp16, runs of 64 texts encoded 26% fewer sentences a second than runs of 128 (59k against 80k;
# passages 10.6k against 10.8k), 256 and 512 a little more (88k, 96k) for twice and four times
# the GPU memory; 128 keeps a run of 256-token texts at ~0.3 GB.
DEFAULT_BATCH_CPU = 32
DEFAULT_BATCH_CUDA = 128
# With CUDA, a run's width is rounded up to a multiple of this many tokens. ONNX Runtime's CUDA
# Attention pays for each input shape it has not run before: on an H200, fp16, a new width's first
# run took 44-86 ms against ~1 ms after (profiled: Attention 45 of 50 ms), whichever attention
# kernel was allowed. A fresh encoder's first pass over 1,024 sentences (batch 32) ran 659/s with
# 16 widths, 1,259/s padded to 8 (6 widths), 1,572/s to 16 (4); the passes after ran the same
# within noise (29k, 31k, 29k/s), so 8: fewer new shapes for at most 7 padded tokens a row.
# The CPU has no such cost (first and later runs the same) and pays for every padded token.
PAD_MULTIPLE_CUDA = 8

# --- How ONNX Runtime runs --------------------------------------------------------------------
# ONNX Runtime rewrites a graph at load; on the CPU this rewrite makes it slower: its CPU
# SkipLayerNormalization (residual addition + bias + layer norm in one node) took ~400 us where
# the two additions and LayerNormalization it replaces took ~60 us (256 x 384, one core): the
# fp32 graph ran +12-13% faster without it (sentences and passages, interleaved rounds). With
# CUDA the fused kernel is kept.
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)

# --- The int8 graph's products ----------------------------------------------------------------
# The exported int8 graph comes in two forms with the same int8 levels (the same vectors where
# both are exact): u8 x u8 products (the weights stored as uint8 around 128) and u8 x s8. ONNX
# Runtime's u8 x s8 kernel on x86 without VNNI adds pairs of products in int16 with saturation
# (vpmaddubsw): 255 x 127 x 2 overflows and the vectors came out wrong (worst cosine 0.990 on an
# AVX2 EPYC). With VNNI (AVX-512 VNNI, AVX-VNNI) or AMX it runs exact int32 dot products, and on
# an Intel Xeon with AMX u8 x s8 ran the same graph 2.9x faster than u8 x u8 (3,408 against
# 1,157 sentences/s), where u8 x u8 takes a slower path. On arm64 both are exact (the dot-product
# and i8mm kernels widen before they add).
U8S8 = "u8s8"
U8U8 = "u8u8"
INT8_FORMS = (U8S8, U8U8)
# x86 flags (Linux /proc/cpuinfo's names) with which ONNX Runtime's u8 x s8 kernel is exact.
EXACT_U8S8_X86 = ("amx_int8", "avx512_vnni", "avx_vnni")
# The flags a profile reports (what decides the int8 form, and what the benchmarks record).
REPORTED_FLAGS = (
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
    "asimddp",
    "i8mm",
    "bf16",
)


@dataclass(frozen=True)
class CpuInfo:
    """The CPU this process runs on: its architecture, model name and instruction-set flags
    (Linux's ``/proc/cpuinfo`` names, lower case), and where the flags were read."""

    arch: str
    model: str
    flags: frozenset[str] = frozenset()
    source: str = "none"

    @property
    def features(self) -> list[str]:
        """The flags among :data:`REPORTED_FLAGS` this CPU has, in that order."""
        return [f for f in REPORTED_FLAGS if f in self.flags]

    def describe(self) -> str:
        """One line: model, architecture and the flags that matter here."""
        flags = " ".join(self.features) or "none of " + " ".join(REPORTED_FLAGS[:6])
        return f"{self.model} ({self.arch}; {flags})"


def normalize_arch(machine: str) -> str:
    """``x86_64`` or ``arm64`` for the names platforms give them; others as given, lower case."""
    name = machine.lower()
    if name in ("x86_64", "amd64", "x64", "i686", "i386", "x86"):
        return "x86_64"
    if name in ("aarch64", "arm64", "armv8", "armv8l"):
        return "arm64"
    return name


def parse_cpuinfo(text: str, machine: str) -> CpuInfo:
    """A :class:`CpuInfo` from the text of Linux's ``/proc/cpuinfo`` (its first processor)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    flags = fields.get("flags") or fields.get("features") or ""
    model = fields.get("model name") or fields.get("hardware") or ""
    if not model and "cpu part" in fields:
        model = f"CPU implementer {fields.get('cpu implementer', '?')} part {fields['cpu part']}"
    return CpuInfo(
        arch=normalize_arch(machine),
        model=model or platform.processor() or machine,
        flags=frozenset(flags.lower().split()),
        source="/proc/cpuinfo",
    )


# numpy's run-time CPU features (read with cpuid, on every OS) -> Linux's names.
_NUMPY_FLAGS = {
    "AVX2": "avx2",
    "AVX512F": "avx512f",
    "AVX512BW": "avx512bw",
    "AVX512VNNI": "avx512_vnni",
    "AVX512BF16": "avx512_bf16",
    "ASIMDDP": "asimddp",
}


def _numpy_flags() -> frozenset[str]:
    """The flags numpy detected at import (it has no AVX-VNNI or AMX entry): the fallback where
    ``/proc/cpuinfo`` does not exist (Windows, macOS)."""
    try:
        from numpy._core._multiarray_umath import (  # type: ignore[import-not-found]
            __cpu_features__ as found,
        )
    except ImportError:
        return frozenset()
    return frozenset(name for key, name in _NUMPY_FLAGS.items() if found.get(key))


def _first_processor(path: Path) -> str:
    """The first processor's block of ``/proc/cpuinfo``, read line by line: the kernel makes the
    file as it is read, one block per CPU (with its clock, measured on some kernels), so a
    machine of many cores does not pay for all of them."""
    lines: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                if lines:
                    break
                continue
            lines.append(line)
    return "".join(lines)


@lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU, read once per process."""
    machine = platform.machine()
    try:
        text = _first_processor(Path("/proc/cpuinfo"))
    except OSError:
        text = ""
    if text:
        info = parse_cpuinfo(text, machine)
        if info.flags:
            return info
    return CpuInfo(
        arch=normalize_arch(machine),
        model=platform.processor() or machine or "unknown CPU",
        flags=_numpy_flags(),
        source="numpy",
    )


@dataclass(frozen=True)
class Int8Form:
    """Which form of the int8 graph runs here, and why."""

    form: str
    reason: str

    def reason_for(self, stored: str | None, graph: str) -> str:
        """Why the form a folder's ``graph`` holds (``stored``: its recorded form, or None)
        runs, given this choice."""
        if stored == self.form:
            return self.reason
        if stored is None:
            return f"{graph} as stored (no record of its form)"
        return (
            f"{self.form} chosen ({self.reason}), but the folder has only the {stored} form: "
            "re-export it for both"
        )


def choose_int8_form(cpu: CpuInfo, asked: str | None = None) -> Int8Form:
    """The int8 products to run on ``cpu``: u8 x s8 where ONNX Runtime's kernel for them is exact
    (x86 with VNNI or AMX, arm64), u8 x u8 elsewhere (x86 without VNNI, where u8 x s8 would
    saturate, and any CPU whose flags could not be read). ``asked`` (``"u8s8"``, ``"u8u8"``;
    ``"auto"`` or None: choose) overrides the choice."""
    if asked not in (None, "", "auto"):
        if asked not in INT8_FORMS:
            raise ModelConfigError(
                f"Unknown int8 form {asked!r}; use 'auto' (chosen per CPU), 'u8s8' (fast with "
                "VNNI, AMX or on arm64; saturates on x86 without VNNI) or 'u8u8' (exact on every "
                "CPU)."
            )
        return Int8Form(asked, "asked for")
    if cpu.arch == "arm64":
        return Int8Form(U8S8, "arm64: ONNX Runtime's u8 x s8 kernels are exact")
    if cpu.arch == "x86_64":
        exact = [f for f in EXACT_U8S8_X86 if f in cpu.flags]
        if exact:
            return Int8Form(U8S8, f"{exact[0]}: u8 x s8 products are exact and fastest")
        if not cpu.flags:
            return Int8Form(U8U8, "the CPU's flags could not be read: u8 x u8 is exact everywhere")
        return Int8Form(U8U8, "no VNNI or AMX: u8 x s8 would saturate, u8 x u8 is exact")
    return Int8Form(U8U8, f"{cpu.arch}: u8 x u8 is exact everywhere")


@dataclass(frozen=True)
class ProviderSettings:
    """The settings of one kind of execution provider (one entry of :data:`PROVIDERS`)."""

    kind: str  # "cpu", "cuda" or "accelerator"
    tokens_per_run: int  # 0: batch_size alone sizes a run
    default_batch: int
    pad_multiple: int
    overlap: bool  # tokenize the next batches on a thread while the graph runs
    spinning: bool  # ONNX Runtime's threads spin between runs
    parallel_runs: bool  # several runs at once, one thread each, for calls of several runs
    cuda_graph: bool  # one short text through a captured CUDA graph
    preload_dlls: bool  # onnxruntime.preload_dlls() before the session (CUDA's libraries)
    disabled_optimizers: tuple[str, ...] = ()


# The CPU: runs capped at 256 tokens, threads that spin for back-to-back runs, several runs at
# once where there are several cores; tokenizing ahead is off, as it shares the same cores.
CPU_SETTINGS = ProviderSettings(
    kind="cpu",
    tokens_per_run=CPU_TOKENS_PER_RUN,
    default_batch=DEFAULT_BATCH_CPU,
    pad_multiple=1,
    overlap=False,
    spinning=True,
    parallel_runs=True,
    cuda_graph=False,
    preload_dlls=False,
    disabled_optimizers=CPU_DISABLED_OPTIMIZERS,
)
# CUDA: large runs, widths rounded to 8, the tokenizer ahead of the GPU, the CPU's threads only
# feeding it (no spinning), a captured graph for queries.
CUDA_SETTINGS = ProviderSettings(
    kind="cuda",
    tokens_per_run=0,
    default_batch=DEFAULT_BATCH_CUDA,
    pad_multiple=PAD_MULTIPLE_CUDA,
    overlap=True,
    spinning=False,
    parallel_runs=False,
    cuda_graph=True,
    preload_dlls=True,
)
# Any other provider (TensorRT, ROCm, DirectML, CoreML, OpenVINO's): a device beside the CPU, run
# as CUDA is, without what only CUDA has (its captured graph, its libraries' preload).
ACCELERATOR = replace(CUDA_SETTINGS, kind="accelerator", cuda_graph=False, preload_dlls=False)

# OpenVINO (backend="openvino"): the CPU, with OpenVINO's own threads on each run (its compiled
# model runs one batch at a time here), and the CPU's runs of at most 256 tokens.
OPENVINO = "OpenVINO"
OPENVINO_SETTINGS = replace(CPU_SETTINGS, parallel_runs=False, disabled_optimizers=())

PROVIDERS: dict[str, ProviderSettings] = {
    CPU: CPU_SETTINGS,
    CUDA: CUDA_SETTINGS,
    OPENVINO: OPENVINO_SETTINGS,
}


def settings_for(provider: str) -> ProviderSettings:
    """The settings of ``provider`` (an ONNX Runtime provider name)."""
    return PROVIDERS.get(provider, ACCELERATOR)


@dataclass(frozen=True)
class DeviceProfile:
    """Every device choice of one encoder, made once: see the module's docstring."""

    provider: str
    settings: ProviderSettings
    threads: int
    int8: Int8Form
    cpu: CpuInfo = field(default_factory=cpu_info)

    @property
    def kind(self) -> str:
        return self.settings.kind

    @property
    def on_cpu(self) -> bool:
        return self.settings.kind == "cpu"

    def describe(self) -> dict[str, Any]:
        """The profile as plain data (what ``GistEncoder.describe()`` and the server report)."""
        s = self.settings
        return {
            "provider": self.provider,
            "kind": s.kind,
            "threads": self.threads,
            "tokens_per_run": s.tokens_per_run or None,
            "default_batch_size": s.default_batch,
            "pad_multiple": s.pad_multiple,
            "int8_form": self.int8.form,
            "int8_form_reason": self.int8.reason,
            "cpu": self.cpu.model,
            "cpu_arch": self.cpu.arch,
            "cpu_flags": self.cpu.features,
        }


def profile_for(
    provider: str, threads: int, *, int8_form: str | None = None, cpu: CpuInfo | None = None
) -> DeviceProfile:
    """The profile of an encoder running on ``provider`` with ``threads`` CPU threads."""
    found = cpu or cpu_info()
    return DeviceProfile(
        provider=provider,
        settings=settings_for(provider),
        threads=threads,
        int8=choose_int8_form(found, int8_form),
        cpu=found,
    )
