"""One benchmark process: load one stack, measure, print one JSON line.

    python benchmarks/worker.py MODE --stack NAME --dirs SOURCE GIST PEERS [--texts FILE] ...

MODE is ``speed`` (texts/s per workload and batch size, batch-1 latency) or ``quality`` (STS
Spearman). Run by benchmarks/run.py, in the stack's own venv. (Cold start is not measured here:
run.py starts a bare ``python -c`` that loads the stack and encodes one text.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.append(str(HERE.parent))  # the clone, last: tests.support, export.sts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("speed", "quality"))
    parser.add_argument("--stack", required=True)
    parser.add_argument("--dirs", nargs=3, type=Path, required=True)
    parser.add_argument("--texts", type=Path, help="workloads JSON written by run.py")
    parser.add_argument("--batches", default="32,128")
    parser.add_argument("--latency", type=int, default=100, help="batch-1 calls to time")
    parser.add_argument("--repeats", type=int, default=1, help="passes over the workloads")
    parser.add_argument("--sts", default="stsb")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from stacks import load

    source, gist, peers = args.dirs
    t_import = time.perf_counter()
    encode = load(
        args.stack,
        source_dir=source,
        gist_dir=gist,
        peers_dir=peers,
        threads=args.threads,
        device=args.device,
    )
    t_load = time.perf_counter()
    if args.mode == "quality":
        from export.sts import load_sts, spearman

        scores = {
            name: spearman(load_sts(name), lambda s: encode(s, 64)) for name in args.sts.split(",")
        }
        print(json.dumps(scores))
        return

    import numpy as np

    workloads = json.loads(args.texts.read_text())
    encode(workloads["sentences"]["texts"][:64], 32)  # warm-up: first-run allocations
    if args.device == "cuda":
        # A GPU runtime's first run of each input shape is slow (ONNX Runtime's CUDA Attention:
        # 44-86 ms against ~1 ms after, results/GPU.md; torch's kernels too): one untimed pass
        # over every workload first, so that the timed passes measure a process that runs.
        for load_ in workloads.values():
            for batch in (int(b) for b in args.batches.split(",")):
                encode(load_["texts"], batch)
    speed: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, load_ in workloads.items():
            for batch in (int(b) for b in args.batches.split(",")):
                start = time.perf_counter()
                out = encode(load_["texts"], batch)
                speed.setdefault(f"{name}@{batch}", []).append(time.perf_counter() - start)
                if out.shape != (len(load_["texts"]), 384):
                    raise SystemExit(f"{args.stack} returned {out.shape} for {name}")
    queries = workloads["queries"]["texts"]
    latencies = []
    for i in range(args.latency):
        start = time.perf_counter()
        encode([queries[i % len(queries)]], 1)
        latencies.append(time.perf_counter() - start)
    lat = np.array(latencies) * 1000
    print(
        json.dumps(
            {
                "seconds": speed,
                "latency_ms": {
                    "p50": float(np.percentile(lat, 50)),
                    "p99": float(np.percentile(lat, 99)),
                },
                "load_s": t_load - t_import,
            }
        )
    )


if __name__ == "__main__":
    main()
