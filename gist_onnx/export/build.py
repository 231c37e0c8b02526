"""The export's build: every graph of one export written, checked and recorded, in named steps.

:func:`write_export` runs them in order: :func:`copy_configs`, :func:`write_fp32` (the torch
graph with pooling inside, then fused), :func:`write_int8` (calibrated, smoothed, quantized and
rewritten for the CPU by :func:`quantize_for_cpu`), :func:`write_fp16`, :func:`check_graphs`
(each against sentence-transformers) and :func:`write_manifest`. The command around it (staging
folder, swap, exit codes) is :mod:`.to_onnx`.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..model import MANIFEST_FILE, Manifest, ModelConfig, sha256
from ..model.layout import exported_graph
from .options import ExportOptions

# The graphs this stage writes, named as the encoder looks for them (gist_onnx.model.layout).
FP32, INT8, FP16 = (exported_graph(v) for v in ("fp32", "int8", "fp16"))

# Files copied from the source model so the output folder is a complete model for gist-onnx.
COPIED_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "config.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
)
# The int8 recipe, chosen by measurement (README, "int8"): smoothing strength.
SMOOTHING_ALPHA = 0.65
# Input channels computed in fp32 instead of smoothing, per FFN down-projection: its largest (one
# GELU output channel of ~25 meeting weights of up to ~8). Against the first layer's
# down-projection in fp32 and the others smoothed: sentences +7-10%, passages +3-6%, and closer to
# torch on Japanese and Korean paragraphs: benchmarks/results/INT8.md, tests/test_quantize.py.
OUTLIER_CHANNELS = {r"layer\.\d+/output/dense/": 1}
# Products whose input gets one static scale and zero point instead of a scale per row: those
# reading a layer norm's output (Q, K, V and the FFN up-projection), whose calibrated bounds hold
# on texts the calibration never saw. Against a scale per row there: passages +8-9%, sentences
# +5-11%, one query -9-13%; STS within 0.11 of fp32 (README, "int8"; benchmarks/results/INT8.md).
STATIC_INPUTS = (r"/attention/self/(query|key|value)/", r"/intermediate/dense/")
_PACKAGES = (
    "gist-onnx",
    "torch",
    "transformers",
    "sentence-transformers",
    "onnx",
    "onnxruntime",
    "tokenizers",
    "numpy",
    "huggingface-hub",
)


def share(path: Path) -> None:
    """Make ``path`` (and, for a folder, everything under it) readable by every user.

    ``onnx.save`` writes external data files 0600 whatever the umask; a folder exported by root
    and run as another user (a container's app user, a function's sandbox user) then fails to
    load. Files become 0644, folders 0755.
    """
    items = [path, *path.rglob("*")] if path.is_dir() else [path]
    for item in items:
        item.chmod(0o755 if item.is_dir() else 0o644)


def versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def copy_configs(source: Path, output: Path) -> None:
    for name in COPIED_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, output / name)
    modules = source / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_text(encoding="utf-8")):
            sub = str(module.get("path") or "")
            if sub and (source / sub).is_dir():
                (output / sub).mkdir(exist_ok=True)
                for item in (source / sub).glob("*.json"):
                    shutil.copy2(item, output / sub / item.name)


def calibration_batches(output: Path, config: ModelConfig) -> list[dict[str, Any]]:
    from ..tokenizer import load_tokenizer
    from .texts import CALIBRATION_TEXTS

    tokenizer = load_tokenizer(output, max_length=config.max_seq_length)
    feeds = []
    for start in range(0, len(CALIBRATION_TEXTS), 16):
        batch = tokenizer(CALIBRATION_TEXTS[start : start + 16])
        feeds.append(
            {
                "input_ids": batch.input_ids,
                "attention_mask": batch.attention_mask,
                "token_type_ids": batch.token_type_ids,
            }
        )
    return feeds


def write_export(
    args: ExportOptions,
    output: Path,
    *,
    source_dir: Path,
    source_name: str,
    revision: str | None,
    config: ModelConfig,
    hf_config: dict[str, Any],
) -> list[str]:
    """Write the graphs, configs and manifest into ``output``; returns the variants that missed
    their parity thresholds."""
    from .check import reference_vectors
    from .graph import externalize
    from .texts import PARITY_TEXTS

    started = time.perf_counter()
    copy_configs(source_dir, output)
    timings: dict[str, float] = {}
    graphs: dict[str, dict[str, Any]] = {}
    reference = reference_vectors(source_dir, PARITY_TEXTS)
    checks: dict[str, Any] = {}  # variant -> its check, where made before the others'
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        step = time.perf_counter()
        graphs["fp32"] = write_fp32(
            source_dir, source_name, raw=raw, output=output, config=config, hf_config=hf_config
        )
        timings["fp32_s"] = time.perf_counter() - step
        if args.quantize:
            step = time.perf_counter()
            graphs["int8"], first = write_int8(
                raw,
                Path(tmp),
                output,
                config=config,
                hf_config=hf_config,
                reference=reference,
                device=args.device,
            )
            if first is not None:
                checks["int8"] = first  # the same weights once moved to the .data file
            timings["int8_s"] = time.perf_counter() - step
    if args.fp16:
        step = time.perf_counter()
        graphs["fp16"] = write_fp16(output, config)
        timings["fp16_s"] = time.perf_counter() - step
    for entry in graphs.values():
        entry["data_file"] = externalize(output / entry["file"]).name
    failed = []
    if "int8" in graphs:
        from .int8_forms import write_forms

        step = time.perf_counter()
        graphs["int8"]["forms"], forms_passed = write_forms(
            output, list(PARITY_TEXTS), device=args.device
        )
        if not forms_passed:
            failed.append("int8 u8s8 form")
        timings["int8_forms_s"] = time.perf_counter() - step
    failed += check_graphs(output, graphs, checks, reference, device=args.device)
    web: dict[str, dict[str, Any]] = {}
    if args.web:
        from .web import WEB, write_web

        step = time.perf_counter()
        web = write_web(output, graphs, config)
        web_failed = check_graphs(output / WEB, web, {}, reference, device="cpu", label="web ")
        failed += [f"web {variant}" for variant in web_failed]
        timings["web_s"] = time.perf_counter() - step
    timings["total_s"] = time.perf_counter() - started
    write_manifest(
        output,
        graphs,
        web=web,
        source_dir=source_dir,
        source_name=source_name,
        revision=revision,
        config=config,
        timings=timings,
        passed=not failed,
    )
    return failed


def write_fp32(
    source_dir: Path,
    source_name: str,
    *,
    raw: Path,
    output: Path,
    config: ModelConfig,
    hf_config: dict[str, Any],
) -> dict[str, Any]:
    """The torch graph with pooling inside (``raw``, kept for the int8 graph), and the fused
    fp32 graph ``model.onnx`` made of it; returns its manifest entry."""
    from .graph import export_pooled, fuse, record_pooling

    print(f"exporting {source_name} (eager attention, pooling={config.pooling}) ...")
    export_pooled(source_dir, raw, pooling=config.pooling, normalize=config.normalize)
    fused = fuse(
        raw,
        output / FP32,
        num_heads=int(hf_config["num_attention_heads"]),
        hidden_size=int(hf_config["hidden_size"]),
    )
    record_pooling(output / FP32, pooling=config.pooling, normalize=config.normalize)
    print(f"  fp32 fused: {fused}")
    if fused.get("Attention", 0) != int(hf_config["num_hidden_layers"]):
        print("  warning: attention did not fuse in every layer; the graph runs, but slower")
    return {"file": FP32, "fused_operators": fused}


def write_int8(
    raw: Path,
    tmp: Path,
    output: Path,
    *,
    config: ModelConfig,
    hf_config: dict[str, Any],
    reference: Any,
    device: str,
) -> tuple[dict[str, Any], Any]:
    """The int8 graph ``model_int8.onnx`` of the raw torch graph (biases folded, calibrated,
    smoothed, quantized, then rewritten for the CPU); returns its manifest entry and its parity
    check when one was made here (to choose between static and per-row scales), else None."""
    from .check import check_graph
    from .graph import node_count
    from .quantize import activation_bounds, fold_attention_biases, peaks
    from .texts import PARITY_TEXTS

    folded = tmp / "folded.onnx"
    biases_folded = fold_attention_biases(raw, folded)
    bounds = activation_bounds(folded, calibration_batches(output, config))
    ranges = peaks(bounds)

    def write(static: tuple[str, ...]) -> dict[str, int]:
        return quantize_for_cpu(
            folded,
            output,
            config=config,
            hf_config=hf_config,
            ranges=ranges,
            bounds=bounds,
            static=static,
        )

    static: tuple[str, ...] = STATIC_INPUTS
    counts = write(static)
    # Static scales are sized on this model's calibration texts: should they miss the check on
    # another model, the graph is written again with a scale per row everywhere.
    first = check_graph(output, "int8", PARITY_TEXTS, reference, device=device)
    static_note = None
    if not first.passed:
        static_note = (
            f"static scales dropped: worst cosine {first.worst_cosine:.6f}, mean "
            f"{first.mean_cosine:.6f} with them missed the thresholds"
        )
        print(f"  int8: {static_note}; writing it with a scale per row everywhere")
        static = ()
        counts = write(static)
    counts["attention_biases_folded"] = biases_folded
    counts["nodes"] = node_count(output / INT8)
    entry: dict[str, Any] = {
        "file": INT8,
        "recipe": "int8 activations with a scale per row, or a static scale and zero "
        f"point where a product matches {list(static)}, per-channel int8 "
        f"weights, SmoothQuant alpha={SMOOTHING_ALPHA} from {len(ranges)} calibrated "
        "activations, "
        "int8 word embeddings, key/value biases folded, "
        f"input channels in fp32 instead of smoothing: {OUTLIER_CHANNELS}; "
        "activations (sequence, batch, hidden) inside",
        "quantized": counts,
    }
    if static_note is not None:
        entry["note"] = static_note
    print(f"  int8: {counts}")
    return entry, first if first.passed else None


def quantize_for_cpu(
    folded: Path,
    output: Path,
    *,
    config: ModelConfig,
    hf_config: dict[str, Any],
    ranges: Any,
    bounds: Any,
    static: tuple[str, ...],
) -> dict[str, int]:
    """Write ``model_int8.onnx`` with the kept recipe; returns what each step changed.

    The int8 graph runs on the CPU only: its load-time rewrites are done here, and its
    activations put in the order ONNX Runtime's CPU attention products read best."""
    from .graph import preoptimize_for_cpu, record_pooling
    from .quantize import skip_abs_after_gelu
    from .rowwise import quantize_rowwise
    from .sequence_major import sequence_major

    graph = output / INT8
    counts = quantize_rowwise(
        folded,
        graph,
        ranges=ranges,
        alpha=SMOOTHING_ALPHA,
        outliers=OUTLIER_CHANNELS,
        static=static,
        bounds=bounds,
    )
    counts["nodes_after_preoptimize"] = preoptimize_for_cpu(graph)
    counts["gelu_rows_without_abs"] = skip_abs_after_gelu(graph)
    counts["sequence_major_layers"] = sequence_major(
        graph,
        num_heads=int(hf_config["num_attention_heads"]),
        hidden_size=int(hf_config["hidden_size"]),
    )
    record_pooling(graph, pooling=config.pooling, normalize=config.normalize)
    return counts


def write_fp16(output: Path, config: ModelConfig) -> dict[str, Any]:
    """``model_fp16.onnx``, converted from the fused fp32 graph; returns its manifest entry."""
    from .graph import record_pooling, to_fp16

    to_fp16(output / FP32, output / FP16)
    record_pooling(output / FP16, pooling=config.pooling, normalize=config.normalize)
    return {"file": FP16, "io": "int64 ids in, float32 out"}


def check_graphs(
    output: Path,
    graphs: dict[str, dict[str, Any]],
    checks: dict[str, Any],
    reference: Any,
    *,
    device: str,
    label: str = "",
) -> list[str]:
    """Check every graph against sentence-transformers (reusing ``checks`` made earlier), record
    the figures and thresholds in its entry, print them; returns the variants that failed."""
    from .check import THRESHOLDS, check_graph
    from .texts import PARITY_TEXTS

    print(f"checking against sentence-transformers on {len(PARITY_TEXTS)} texts ...")
    failed = []
    for variant, entry in graphs.items():
        if variant == "fp16" and device != "cuda":
            # ONNX Runtime's CPU kernels run the fp16 graph in fp32 arithmetic: this checks the
            # converted weights and graph, not CUDA's fp16 arithmetic (--device cuda does).
            entry["check_note"] = "run on CPU: fp16 weights, fp32 arithmetic"
        result = checks.get(variant) or check_graph(
            output, variant, PARITY_TEXTS, reference, device=device
        )
        entry["check"] = result.as_dict()
        entry["thresholds"] = THRESHOLDS[variant]
        status = "ok" if result.passed else "FAILED"
        print(
            f"  {label}{variant}: worst cosine {result.worst_cosine:.6f}, "
            f"mean {result.mean_cosine:.6f}, "
            f"across batchings worst {result.batch_worst_cosine:.6f} "
            f"(max |diff| {result.batch_max_abs_diff:.2e}) on {result.provider}: {status}"
        )
        if not result.passed:
            failed.append(variant)
    return failed


def write_manifest(
    output: Path,
    graphs: dict[str, dict[str, Any]],
    *,
    source_dir: Path,
    source_name: str,
    revision: str | None,
    config: ModelConfig,
    timings: dict[str, float],
    passed: bool,
    web: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Every file's sha256, each graph's size, and the export's record, as one Manifest; every
    file made readable by all."""
    from .graph import OPSET

    files = {
        str(p.relative_to(output)): sha256(p)
        for p in sorted(output.rglob("*"))
        if p.is_file() and p.name != MANIFEST_FILE
    }
    for entry in graphs.values():
        entry["sha256"] = files[entry["file"]]
        entry["bytes"] = sum((output / entry[k]).stat().st_size for k in ("file", "data_file"))
    for entry in (web or {}).values():
        entry["sha256"] = files[entry["file"]]
        entry["bytes"] = (output / entry["file"]).stat().st_size
    share(output)
    manifest = Manifest(
        # A hub repo id, or for a local folder only its name: the manifest ships in bundles and
        # images, and must not carry the exporting machine's paths.
        source=(
            {"model": None, "folder": source_dir.name, "revision": None}
            if revision is None and Path(source_name).is_absolute()
            else {"model": source_name, "revision": revision}
        ),
        opset=OPSET,
        config={
            "max_seq_length": config.max_seq_length,
            "pooling": config.pooling,
            "normalize": config.normalize,
            "dimension": config.dimension,
        },
        graphs=graphs,
        files=files,
        versions=versions(),
        timings={k: round(v, 2) for k, v in timings.items()},
        passed=passed,
        web=web or {},
    )
    share(manifest.write(output))
