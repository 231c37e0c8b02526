"""Where the graph's time goes: ONNX Runtime's per-operator profile for one workload.

    python benchmarks/studies/profile_ops.py [--variant fp32|int8] [--workload sentences|passages]
                                     [--threads 1|2] [--model DIR]

Runs gist-onnx on the benchmark workload (benchmarks/.work/, written by run.py) with ONNX
Runtime's profiler on, and prints each operator type's share of the kernel time.

The session runs one graph run at a time on ``--threads`` threads. The default, 1, is how a call
of several runs spends its time on 2 cores (two single-threaded runs at once, ``parallel_runs``);
2 is how one run of a call runs. The shares differ: on 2 threads the int8 graph's key transpose
took 5.7% of the sentences' kernel time, on 1 thread under 1%.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import onnxruntime as ort

from gist_onnx import GistEncoder
from gist_onnx.device import CPU_DISABLED_OPTIMIZERS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the harness's helpers
from common import add_model_argument

WORK = Path(__file__).resolve().parents[1] / ".work"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="fp32")
    parser.add_argument("--workload", default="sentences")
    parser.add_argument("--threads", type=int, default=1)
    add_model_argument(parser)
    args = parser.parse_args()
    texts = json.loads((WORK / "workloads.json").read_text())[args.workload]["texts"]
    # One run at a time, on the profiled session (runs at once would use a second session).
    folder = args.model or WORK / "gist-model"
    encoder = GistEncoder(folder, variant=args.variant, threads=args.threads, parallel_runs=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.enable_profiling = True
    options.profile_file_prefix = str(WORK / "ortprofile")
    encoder.session.session = ort.InferenceSession(
        str(encoder.files.graph),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(CPU_DISABLED_OPTIMIZERS),  # as the encoder's CPU session
    )
    encoder.encode(texts)
    events = json.loads(Path(encoder.session.session.end_profiling()).read_text())
    per_op: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    total = sum(per_op.values())
    print(
        f"{args.variant} on {len(texts)} {args.workload}, {args.threads} thread(s): "
        f"{total / 1000:.0f} ms of kernel time"
    )
    for op, micros in per_op.most_common(10):
        print(f"  {op:28s} {micros / total:6.1%}")


if __name__ == "__main__":
    main()
