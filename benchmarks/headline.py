"""The README's headline table, the docs' tables and every figure quoted in their prose
(``benchmarks/figures.py``), generated from the committed results (their one source).

    python benchmarks/headline.py            # print the README's table
    python benchmarks/headline.py --write    # rewrite the tables and figures in README.md and docs/

CPU figures: ``benchmarks/results/<family>/results.json``, one per kind of CPU (written by
``python benchmarks/run.py``).
GPU figures: ``benchmarks/results/gpu/gpu_check.json`` (written by
``benchmarks/gpu/gpu_check.py run`` on an H200). A test checks that README.md and
docs/benchmarks.md hold exactly what this writes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GPU_RESULTS = HERE / "results" / "gpu" / "gpu_check.json"
START, END = "<!-- headline:start -->", "<!-- headline:end -->"
DOCS_START, DOCS_END = "<!-- stacks:start -->", "<!-- stacks:end -->"
GPU_START, GPU_END = "<!-- gpu:start -->", "<!-- gpu:end -->"
QUALITY_RESULTS = HERE / "results" / "quality.json"
# The docs' table: sentence-transformers as users run it, its ONNX exports, the other wrappers,
# and gist-onnx (the engines, CTranslate2 and OpenVINO, have their own report: PEERS.md).
DOCS_STACKS = (
    "st-torch",
    "st-onnx-o3",
    "st-onnx-int8",
    "fastembed",
    "optimum",
    "gist-fp32",
    "gist-int8",
)
CPU_STACKS = {
    "st-torch": "sentence-transformers (torch)",
    "gist-fp32": "**gist-onnx fp32**",
    "gist-int8": "**gist-onnx int8**",
}


# How the README names each kind of CPU (benchmarks/results/<family>/).
FAMILY_LABELS = {
    "amx": "AMX",
    "avx512-vnni": "AVX-512 VNNI",
    "avx-vnni": "AVX-VNNI",
    "avx2": "AVX2, no VNNI",
    "arm64": "arm64",
}


def cpu_label(family: str) -> str:
    """``AMD EPYC (AVX-512 VNNI)``: the CPU of one family's results, as the tables name it."""
    m = _results(family)["machine"]
    return f"{m['cpu']} ({FAMILY_LABELS.get(family, family)})"


def _results(family: str) -> dict[str, Any]:
    return json.loads((HERE / "results" / family / "results.json").read_text(encoding="utf-8"))


def _cpu_rows(family: str) -> list[str]:
    r = _results(family)
    rows = []
    for stack, label in CPU_STACKS.items():
        cells = []
        for name in ("sentences", "passages"):
            key = f"{name}@32"
            speed = figures.rate(stack, key, family)
            cells.append(f"{speed:,.0f} ({speed / figures.rate('st-torch', key, family):.1f}x)")
        query = statistics.median(r["raw"]["latency_ms"][stack]["p50"])
        start = figures.coldstart(stack, family)
        rows.append(
            f"| {cpu_label(family)} | {label} | {cells[0]} | {cells[1]} | {query:.2f} ms "
            f"| {start:.2f} s |"
        )
    return rows


def _gpu_rows(g: dict[str, Any]) -> list[str]:
    speed = g["speed"]
    ours = speed["gist-onnx overlap"]
    theirs = [speed["sentence-transformers float32"], speed["sentence-transformers float16"]]
    best = {k: max(t[k] for t in theirs) for k in ("sentences_per_s", "passages_per_s")}
    best_query = min(t["one_query_ms"] for t in theirs)
    return [
        f"| {g['gpu'].split(',')[0]} | sentence-transformers (its faster of fp32, fp16) | "
        f"{best['sentences_per_s']:,.0f} (1.0x) | {best['passages_per_s']:,.0f} (1.0x) | "
        f"{best_query:.2f} ms | |",
        f"| {g['gpu'].split(',')[0]} | **gist-onnx fp16** | {ours['sentences_per_s']:,.0f} "
        f"({ours['sentences_per_s'] / best['sentences_per_s']:.1f}x) | "
        f"{ours['passages_per_s']:,.0f} ({ours['passages_per_s'] / best['passages_per_s']:.1f}x) "
        f"| {ours['one_query_ms']:.2f} ms | |",
    ]


def table() -> str:
    """The markdown of the headline table: rows for each kind of CPU with committed results, and
    the GPU's, with the commands that measure them."""
    g = json.loads(GPU_RESULTS.read_text(encoding="utf-8"))
    kinds = figures.families()
    runs = "; ".join(
        f"{cpu_label(family)}: {_results(family)['machine']['cores']} cores, medians of "
        f"{_results(family)['repeats']} rounds"
        for family in kinds
    )
    lines = [
        "CPU rows: 2 threads a stack, batches of 32 (`python benchmarks/run.py`, which writes each "
        f"kind of CPU's results apart: {runs}). GPU: {g['gpu']}, batches of 128 "
        "(`benchmarks/gpu/gpu_check.py run`). Ratios are to sentence-transformers on the same "
        "machine; stand-in weights (GIST's architecture). The int8 graph runs u8 x s8 products "
        "where the CPU has VNNI or AMX, u8 x u8 where it has not.",
        "",
        "| machine | stack | sentences/s | ~250-token passages/s | one query | cold start |",
        "|---|---|---|---|---|---|",
        *(row for family in kinds for row in _cpu_rows(family)),
        *_gpu_rows(g),
    ]
    return "\n".join(lines)


def stacks_table() -> str:
    """Every wrapper's throughput at batch 32 and 128, one query, cold start, peak RSS and STS-B,
    with ratios to sentence-transformers on torch."""
    from stacks import STACKS  # beside this file, on sys.path with figures

    family = figures.families()[0]
    r = _results(family)
    raw, med = r["raw"], statistics.median
    keys = ("sentences@32", "sentences@128", "passages@32", "passages@128")
    lines = [
        f"On {cpu_label(family)}, {r['machine']['cores']} cores:",
        "",
        "| stack | sentences/s @32 | @128 | passages/s @32 | @128 | one query | cold start "
        "| peak RSS | STS-B |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for stack in DOCS_STACKS:
        label = STACKS[stack].label
        label = f"**{label}**" if stack.startswith("gist") else label
        cells = []
        for key in keys:
            speed = figures.rate(stack, key, family)
            cells.append(f"{speed:,.0f} ({speed / figures.rate('st-torch', key, family):.2f}x)")
        cold = raw["coldstart"][stack]
        lines.append(
            f"| {label} | {' | '.join(cells)} | {med(raw['latency_ms'][stack]['p50']):.2f} ms "
            f"| {med(cold['wall_s']):.2f} s | {med(cold['rss_mib']):.0f} MiB "
            f"| {r['quality'][stack]['stsb']:.2f} |"
        )
    return "\n".join(lines)


def gpu_table() -> str:
    """gist-onnx fp16 against sentence-transformers fp32 and fp16 on the same GPU."""
    g = json.loads(GPU_RESULTS.read_text(encoding="utf-8"))
    rows = {
        "**gist-onnx fp16**": g["speed"]["gist-onnx overlap"],
        "sentence-transformers fp32": g["speed"]["sentence-transformers float32"],
        "sentence-transformers fp16": g["speed"]["sentence-transformers float16"],
    }
    lines = ["| | sentences/s | ~250-token passages/s | one query |", "|---|---|---|---|"]
    for label, row in rows.items():
        lines.append(
            f"| {label} | {row['sentences_per_s']:,.0f} | {row['passages_per_s']:,.0f} "
            f"| {row['one_query_ms']:.2f} ms |"
        )
    return "\n".join(lines)


def variants_table() -> str:
    """Each graph's file, size and cosine to sentence-transformers, as the export measured it
    (``benchmarks/quality.py``); fp16's on CUDA from the GPU check."""
    q = json.loads(QUALITY_RESULTS.read_text(encoding="utf-8"))["variants"]
    g = json.loads(GPU_RESULTS.read_text(encoding="utf-8"))
    where = {"fp32": "CPU, CUDA", "int8": "CPU", "fp16": "CUDA"}
    lines = [
        "| variant | where | file (graph + weights) "
        f"| worst / mean cosine to sentence-transformers, {q['fp32']['check']['texts']} varied "
        "texts |",
        "|---|---|---|---|",
    ]
    for variant in ("fp32", "int8", "fp16"):
        v = q[variant]
        name = f"`{variant}`" + (" (default)" if variant == "fp32" else "")
        if variant == "fp16":
            cos = (
                f"{g['parity_worst_cosine']:.7f} / {g['parity_mean_cosine']:.7f} on an "
                f"{g['gpu'].removeprefix('NVIDIA ')} (CUDA's fp16 arithmetic)"
            )
        else:
            digits = 7 if variant == "fp32" else 5
            check = v["check"]
            cos = f"{check['worst_cosine']:.{digits}f} / {check['mean_cosine']:.{digits}f}"
        size = f"`{v['file']}`, {v['bytes'] / 1e6:.0f} MB"
        lines.append(f"| {name} | {where[variant]} | {size} | {cos} |")
    return "\n".join(lines)


def sts_table() -> str:
    """STS Spearman x 100 of each graph and of torch (``benchmarks/quality.py``)."""
    q = json.loads(QUALITY_RESULTS.read_text(encoding="utf-8"))
    names = {"stsb": "STS-B", **{f"sts{n}": f"STS{n}" for n in range(12, 17)}}
    sets = q["sts_sets"]
    lines = [
        "| stack | " + " | ".join(names[n] for n in sets) + " |",
        "|---" * (len(sets) + 1) + "|",
    ]
    for stack, scores in q["sts"].items():
        lines.append(f"| {stack} | " + " | ".join(f"{scores[n]:.2f}" for n in sets) + " |")
    return "\n".join(lines)


# (page, start marker, end marker, the function that writes what goes between them)
TABLES = (
    ("README.md", START, END, table),
    ("docs/benchmarks.md", DOCS_START, DOCS_END, stacks_table),
    ("docs/gpu.md", GPU_START, GPU_END, gpu_table),
    ("docs/library.md", "<!-- variants:start -->", "<!-- variants:end -->", variants_table),
    ("docs/export.md", "<!-- sts:start -->", "<!-- sts:end -->", sts_table),
)


def pages(root: Path) -> list[Path]:
    """Every page whose prose may quote a figure: the README and the docs."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def _replace(path: Path, start: str, end: str, body: str) -> None:
    text = path.read_text(encoding="utf-8")
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    path.write_text(f"{before}{start}\n{body}\n{end}{after}", encoding="utf-8")


def write(root: Path) -> None:
    for page, start, end, make in TABLES:
        _replace(root / page, start, end, make())
    for path in pages(root):
        text = path.read_text(encoding="utf-8")
        if figures.MARKER.search(text):
            path.write_text(figures.render(text), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--write", action="store_true", help="rewrite the README's and docs' tables"
    )
    args = parser.parse_args()
    if args.write:
        write(ROOT)
    else:
        print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
