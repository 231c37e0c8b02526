"""`gist-onnx embed` on files: texts/s against `encode` in one process, and peak RSS.

    python benchmarks/embed.py [--model DIR] [--lines 100000] [--many 1000000]

- 100k lines of STS-B sentences (a .txt file) to .npy with `gist-onnx embed`, int8, against
  `encode` on the same texts held in a list, each in a fresh process (peak RSS as the process
  reports it);
- 1M short lines to .npy, to show memory stays bounded whatever the file's size: the output
  goes to disk chunk by chunk, so peak RSS does not grow with the line count.

Writes benchmarks/results/<family>/embed.json and the "Embed" section of
benchmarks/results/<family>/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.append(str(HERE.parent))  # the clone, last: tests.support, export.sts
import sections  # noqa: E402
from common import add_model_argument, model_folder  # noqa: E402
from export.sts import load_sts  # noqa: E402

CHILD = """
import json, resource, sys, time
mode, model, source, output = sys.argv[1:5]
t = time.perf_counter()
if mode == "embed":
    from gist_onnx.cli import main
    code = main(["embed", source, "-o", output, "--model", model, "--variant", "int8", "--quiet"])
    assert code == 0
else:
    from gist_onnx import GistEncoder
    texts = open(source, encoding="utf-8").read().splitlines()
    GistEncoder(model, variant="int8").encode(texts)
elapsed = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"s": elapsed, "peak_mib": peak}))
"""


def run(mode: str, model: Path, source: Path, output: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(model), str(source), str(output)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_argument(parser)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--many", type=int, default=1_000_000)
    args = parser.parse_args()

    model = model_folder(args.model)
    sentences = load_sts("stsb").sentences
    r: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "lines": args.lines, "many": args.many}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = work / "texts.txt"
        source.write_text("\n".join(sentences[i % len(sentences)] for i in range(args.lines)))
        print(f"{args.lines:,} lines: gist-onnx embed, then encode ...", flush=True)
        r["embed"] = run("embed", model, source, work / "out.npy")
        r["encode"] = run("encode", model, source, work / "unused")
        many = work / "many.txt"
        many.write_text("\n".join(f"query {i % 977}" for i in range(args.many)))
        print(f"{args.many:,} short lines: gist-onnx embed ...", flush=True)
        r["embed_many"] = run("embed", model, many, work / "many.npy")
        r["embed_many"]["output_mib"] = (work / "many.npy").stat().st_size / 2**20
    sections.publish("embed", r, render(r))
    return 0


def render(r: dict[str, Any]) -> str:
    e, c, m = r["embed"], r["encode"], r["embed_many"]
    return "\n".join(
        [
            "## Embed",
            "",
            f"Written by `python benchmarks/embed.py` ({r['date']}); int8, 2 cores, each run a "
            "fresh process (time includes loading the model; peak RSS as the process reports it).",
            "",
            "| run | texts/s | peak RSS |",
            "|---|---|---|",
            f"| `gist-onnx embed` {r['lines']:,} STS-B lines, .txt to .npy | "
            f"{r['lines'] / e['s']:,.0f} ({r['lines'] / e['s'] / (r['lines'] / c['s']):.2f}x "
            f"encode) | {e['peak_mib']:.0f} MiB |",
            f"| `encode` on the same texts in a list | {r['lines'] / c['s']:,.0f} | "
            f"{c['peak_mib']:.0f} MiB |",
            f"| `gist-onnx embed` {r['many']:,} short lines, .txt to .npy "
            f"({m['output_mib']:,.0f} MiB written) | {r['many'] / m['s']:,.0f} | "
            f"{m['peak_mib']:.0f} MiB |",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
