"""The README's headline table, generated from the committed results (its one source).

    python benchmarks/headline.py            # print the table
    python benchmarks/headline.py --write    # put it in README.md, between its markers

CPU figures: ``benchmarks/results/results.json`` (written by ``python benchmarks/run.py``).
GPU figures: ``benchmarks/logs/gpu/5-final.json`` (written by ``benchmarks/gpu/gpu_check.py run``
on an H200). A test checks that README.md holds exactly what this prints.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CPU_RESULTS = HERE / "results" / "results.json"
GPU_RESULTS = HERE / "logs" / "gpu" / "5-final.json"
START, END = "<!-- headline:start -->", "<!-- headline:end -->"
CPU_STACKS = {
    "st-torch": "sentence-transformers (torch)",
    "gist-fp32": "**gist-onnx fp32**",
    "gist-int8": "**gist-onnx int8**",
}


def _cpu_rows(r: dict[str, Any]) -> list[str]:
    seconds = {
        s: {k: statistics.median(v) for k, v in r["raw"]["seconds"][s].items()} for s in CPU_STACKS
    }
    count = {name: r["workloads"][name]["count"] for name in ("sentences", "passages")}
    rows = []
    for stack, label in CPU_STACKS.items():
        cells = []
        for name in ("sentences", "passages"):
            key = f"{name}@32"
            rate = count[name] / seconds[stack][key]
            ratio = seconds["st-torch"][key] / seconds[stack][key]
            cells.append(f"{rate:,.0f} ({ratio:.1f}x)")
        query = statistics.median(r["raw"]["latency_ms"][stack]["p50"])
        start = statistics.median(r["raw"]["coldstart"][stack]["wall_s"])
        rows.append(f"| CPU | {label} | {cells[0]} | {cells[1]} | {query:.2f} ms | {start:.2f} s |")
    return rows


def _gpu_rows(g: dict[str, Any]) -> list[str]:
    speed = g["speed"]
    ours = speed["gist-onnx overlap"]
    theirs = [speed["sentence-transformers float32"], speed["sentence-transformers float16"]]
    best = {k: max(t[k] for t in theirs) for k in ("sentences_per_s", "passages_per_s")}
    best_query = min(t["one_query_ms"] for t in theirs)
    return [
        "| GPU | sentence-transformers (its faster of fp32, fp16) | "
        f"{best['sentences_per_s']:,.0f} (1.0x) | {best['passages_per_s']:,.0f} (1.0x) | "
        f"{best_query:.2f} ms | |",
        f"| GPU | **gist-onnx fp16** | {ours['sentences_per_s']:,.0f} "
        f"({ours['sentences_per_s'] / best['sentences_per_s']:.1f}x) | "
        f"{ours['passages_per_s']:,.0f} ({ours['passages_per_s'] / best['passages_per_s']:.1f}x) "
        f"| {ours['one_query_ms']:.2f} ms | |",
    ]


def table() -> str:
    """The markdown of the headline table, with the commands that measure it."""
    r = json.loads(CPU_RESULTS.read_text(encoding="utf-8"))
    g = json.loads(GPU_RESULTS.read_text(encoding="utf-8"))
    m = r["machine"]
    lines = [
        f"CPU: {m['cpu']}{' (AVX-512 VNNI)' if 'avx512_vnni' in m['isa'] else ''}, "
        f"{m['cores']} cores, 2 threads a stack, batches of 32, medians of "
        f"{r['repeats']} rounds (`python benchmarks/run.py`). GPU: {g['gpu']}, batches of 128 "
        "(`benchmarks/gpu/gpu_check.py run`). Ratios are to sentence-transformers on the same "
        "machine; stand-in weights (GIST's architecture).",
        "",
        "| | stack | sentences/s | ~250-token passages/s | one query | cold start |",
        "|---|---|---|---|---|---|",
        *_cpu_rows(r),
        *_gpu_rows(g),
    ]
    return "\n".join(lines)


def write(readme: Path) -> None:
    text = readme.read_text(encoding="utf-8")
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    readme.write_text(f"{before}{START}\n{table()}\n{END}{after}", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite README.md's table")
    args = parser.parse_args()
    if args.write:
        write(ROOT / "README.md")
    else:
        print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
