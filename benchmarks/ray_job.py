"""Ray Data on a local cluster of 2 CPUs against `encode` in one process, on the same texts.

    python benchmarks/ray_job.py [--model DIR] [--texts 20000]

The Ray job: `ray.init(num_cpus=2)`, a dataset of STS-B sentences, `map_batches(GistEmbedder)`
with 2 actors of 1 ONNX Runtime thread each (`num_cpus=0.5`: two actors at 1 CPU each on 2 CPUs
leave none for reading and hang), batches of 256, materialized. Timed from the dataset's
creation to the last vector (Ray's start-up reported apart). `encode`: one process, 2 threads,
batches of 32. Writes benchmarks/results/<family>/ray_job.json and the "Ray" section of
benchmarks/results/<family>/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.append(str(HERE.parent))  # the clone, last: tests.support, export.sts
import sections  # noqa: E402
from common import add_model_argument, model_folder  # noqa: E402
from export.sts import load_sts  # noqa: E402

ENCODE = """
import json, sys, time
from gist_onnx import GistEncoder
texts = json.load(open(sys.argv[1]))
enc = GistEncoder(sys.argv[2], variant="int8")
t = time.perf_counter(); enc.encode(texts); print(time.perf_counter() - t)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_argument(parser)
    parser.add_argument("--texts", type=int, default=20_000)
    args = parser.parse_args()

    model = str(model_folder(args.model))
    sentences = load_sts("stsb").sentences
    texts = [sentences[i % len(sentences)] for i in range(args.texts)]
    work = HERE / ".work"
    work.mkdir(exist_ok=True)
    (work / "ray_texts.json").write_text(json.dumps(texts))
    encode_s = float(
        subprocess.run(
            [sys.executable, "-c", ENCODE, str(work / "ray_texts.json"), model],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    print(f"encode: {args.texts / encode_s:,.0f} texts/s", flush=True)

    import ray

    from gist_onnx.integrations.ray import GistEmbedder

    warnings.simplefilter("ignore", DeprecationWarning)  # Ray Data's own, at start
    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - started
    try:
        started = time.perf_counter()
        ds = ray.data.from_items([{"text": t} for t in texts])
        embedded = ds.map_batches(
            GistEmbedder,
            fn_constructor_kwargs={"model": model, "variant": "int8", "threads": 1},
            compute=ray.data.ActorPoolStrategy(size=2),
            num_cpus=0.5,
            batch_size=256,
            batch_format="numpy",
        ).materialize()
        rows = embedded.count()
        job = time.perf_counter() - started
    finally:
        ray.shutdown()
    r: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "texts": args.texts,
        "rows": rows,
        "encode_s": encode_s,
        "ray_startup_s": startup,
        "ray_job_s": job,
    }
    sections.publish("ray_job", r, render(r))
    return 0


def render(r: dict[str, Any]) -> str:
    ray_rate, encode_rate = r["texts"] / r["ray_job_s"], r["texts"] / r["encode_s"]
    return "\n".join(
        [
            "## Ray",
            "",
            f"Written by `python benchmarks/ray_job.py` ({r['date']}): {r['texts']:,} STS-B "
            "sentences, int8, 2 CPUs.",
            "",
            "| run | texts/s | |",
            "|---|---|---|",
            f"| `encode`, one process, 2 threads | {encode_rate:,.0f} | 1.00x |",
            f"| Ray Data `map_batches(GistEmbedder)`, 2 actors x 1 thread, local cluster | "
            f"{ray_rate:,.0f} | {ray_rate / encode_rate:.2f}x (Ray's start-up, "
            f"{r['ray_startup_s']:.1f} s, not counted) |",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
