"""Where fp32 time goes in ONNX Runtime and in OpenVINO, and what ONNX Runtime offers below fp32.

    python benchmarks/studies/fp32_profile.py    (after benchmarks/run.py set up benchmarks/.work)

Both engines run the same graph (gist-onnx's model.onnx) on the same length-sorted batches
(sentences and passages of benchmarks/.work/workloads.json, runs cut as the encoder cuts them
on the CPU), 2 threads, one warm pass then one profiled pass. ONNX Runtime's profiler gives
each operator's kernel time and input shapes (so its FLOPs); OpenVINO's PERF_COUNT gives each
executed layer's time, type and kernel. The numpy sgemm rate of the same run is the ceiling.
Then the precisions below fp32 that ONNX Runtime could use on this CPU are tried. Writes
benchmarks/results/FP32.md and benchmarks/results/fp32_profile.json. OpenVINO runs in the
peers venv, in its own process.
"""

from __future__ import annotations

import collections
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent.parent  # benchmarks/
WORK = BENCH / ".work"
RESULTS = BENCH / "results"
OUT = WORK / "fp32_profile"
PEERS_PY = WORK / "peers" / "bin" / "python"
THREADS = 2
WORKLOADS = ("sentences", "passages")
LAYERS, HIDDEN, FFN = 6, 384, 1536


def batches(workload: str) -> list[dict[str, np.ndarray]]:
    """The encoder's runs for this workload: tokenized, length-sorted, cut as on the CPU."""
    from gist_onnx.device import CPU_TOKENS_PER_RUN
    from gist_onnx.planner import cut_runs
    from gist_onnx.tokenizer import load_tokenizer

    texts = json.loads((WORK / "workloads.json").read_text())[workload]["texts"]
    tokenizer = load_tokenizer(WORK / "gist-model", max_length=256)
    encodings = tokenizer.tokenize(texts)
    feeds = []
    for rows in cut_runs([len(e) for e in encodings], 32, CPU_TOKENS_PER_RUN):
        batch = tokenizer.pad([encodings[i] for i in rows])
        feeds.append(
            {
                "input_ids": batch.input_ids,
                "attention_mask": batch.attention_mask,
                "token_type_ids": batch.token_type_ids,
            }
        )
    return feeds


def model_flops(feeds: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """FLOPs of the products: the projections (per padded token) and attention (per sequence)."""
    projections = attention = 0.0
    for feed in feeds:
        b, s = feed["input_ids"].shape
        projections += 2.0 * b * s * LAYERS * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * FFN)
        attention += 2.0 * b * LAYERS * 2 * s * s * HIDDEN
    return {"projections": projections, "attention": attention}


def sgemm_ceiling() -> float:
    """numpy float32 GFLOP/s on a 2048-cube product, best of 5 (2 threads, as the engines)."""
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return 2 * 2048**3 / best / 1e9


def mlas_ceiling() -> float:
    """ONNX Runtime's own fp32 MatMul (MLAS, which OpenVINO's f32 FullyConnected also calls here)
    on a run-sized product of the model's shapes, 512 x 384 by 384 x 1,536 (in cache, as the
    runs are): best of 5 rounds of 50."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((HIDDEN, FFN), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "sgemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, HIDDEN])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, FFN])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    feed = {"x": rng.standard_normal((512, HIDDEN), dtype=np.float32)}
    best = float("inf")
    for _ in range(6):
        start = time.perf_counter()
        for _ in range(50):
            session.run(None, feed)
        best = min(best, (time.perf_counter() - start) / 50)
    return 2 * 512 * HIDDEN * FFN / best / 1e9


def ort_profile(feeds: list[dict[str, np.ndarray]], graph: Path) -> dict[str, Any]:
    import onnxruntime as ort

    from gist_onnx.device import CPU_DISABLED_OPTIMIZERS

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.enable_profiling = True
    options.profile_file_prefix = str(OUT / "ort")
    session = ort.InferenceSession(
        str(graph),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(CPU_DISABLED_OPTIMIZERS),  # as gist-onnx's CPU sessions
    )
    for feed in feeds:
        session.run(None, feed)  # the warm pass: its events are left out below
    start = time.perf_counter()
    for feed in feeds:
        session.run(None, feed)
    wall = time.perf_counter() - start
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    profiled_from = runs[len(feeds)]  # the (n+1)-th run opens the profiled pass
    times: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        if event["ts"] >= profiled_from:
            times[event["args"]["op_name"]] += event["dur"]
    return {"wall_ms": wall * 1000, "kernel_ms": {k: v / 1000 for k, v in times.items()}}


def openvino_profile(workload: str, precision: str) -> dict[str, Any]:
    """Run in the peers venv: OpenVINO's per-layer profile of the same batches."""
    import openvino as ov

    data = np.load(OUT / f"{workload}.npz")
    feeds = [
        {k: data[f"{i}_{k}"] for k in ("input_ids", "attention_mask", "token_type_ids")}
        for i in range(int(data["count"]))
    ]
    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(WORK / "gist-model" / "model.onnx")),
        "CPU",
        {
            "INFERENCE_NUM_THREADS": THREADS,
            "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": "LATENCY",
            "PERF_COUNT": True,
        },
    )
    request = compiled.create_infer_request()
    for feed in feeds:
        request.infer(feed)
    times: collections.Counter[str] = collections.Counter()
    kernels: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    start = time.perf_counter()
    for feed in feeds:
        request.infer(feed)
        for info in request.profiling_info:
            if info.status != info.Status.EXECUTED:
                continue
            micros = info.real_time.total_seconds() * 1e6
            times[info.node_type] += micros
            kernels[info.node_type][info.exec_type] += micros
    wall = time.perf_counter() - start
    return {
        "wall_ms": wall * 1000,
        "kernel_ms": {k: v / 1000 for k, v in times.items()},
        "kernels": {t: dict(c.most_common(3)) for t, c in kernels.items()},
        "version": ov.__version__,
    }


def timed(session: Any, feeds: list[dict[str, np.ndarray]]) -> float:
    start = time.perf_counter()
    for feed in feeds:
        session.run(None, feed)
    return time.perf_counter() - start


def below_fp32(feeds: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """What ONNX Runtime's CPU provider does with bf16 and fp16 on this machine."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from gist_onnx.device import CPU_DISABLED_OPTIMIZERS

    found: dict[str, Any] = {"providers": ort.get_available_providers(), "ort": ort.__version__}
    # 1. A bf16 product: is there a CPU kernel at all?
    weight_bf16 = helper.make_tensor("w16", TensorProto.BFLOAT16, [384, 384], [1.0] * 384 * 384)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w16"], ["y"])],
        "bf16",
        [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [None, 384])],
        [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [None, 384])],
        [weight_bf16],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        found["bf16_matmul"] = "a session was created"
    except Exception as exc:  # noqa: BLE001 - the message is the finding
        found["bf16_matmul"] = str(exc).splitlines()[0][:300]
    # 2. The one bf16 GEMM switch ONNX Runtime has, and the fp16 graph, timed against fp32.
    folder = WORK / "gist-model"
    sessions = {}
    for name, graph_file, entries in (
        ("fp32", "model.onnx", {}),
        (
            "fp32 + mlas.enable_gemm_fastmath_arm64_bfloat16=1",
            "model.onnx",
            {"mlas.enable_gemm_fastmath_arm64_bfloat16": "1"},
        ),
        ("fp16 graph", "model_fp16.onnx", {}),
    ):
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        for key, value in entries.items():
            options.add_session_config_entry(key, value)
        session = ort.InferenceSession(
            str(folder / graph_file),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(CPU_DISABLED_OPTIMIZERS),
        )
        timed(session, feeds[:4])
        sessions[name] = session
    rounds: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(3):
        for name, session in sessions.items():
            rounds[name].append(timed(session, feeds))
    base = float(np.median(rounds["fp32"]))
    found["timed_ms"] = {n: float(np.median(r)) * 1000 for n, r in rounds.items()}
    found["ratio_to_fp32"] = {n: base / float(np.median(r)) for n, r in rounds.items()}
    return found


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--openvino":
        print(json.dumps(openvino_profile(sys.argv[2], sys.argv[3])))
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": platform.processor() or platform.machine()}
    report["sgemm_gflops"] = sgemm_ceiling()
    report["mlas_gflops"] = mlas_ceiling()
    for workload in WORKLOADS:
        feeds = batches(workload)
        arrays = {f"{i}_{k}": v for i, feed in enumerate(feeds) for k, v in feed.items()}
        np.savez(OUT / f"{workload}.npz", count=len(feeds), **arrays)
        entry: dict[str, Any] = {"runs": len(feeds), "flops": model_flops(feeds)}
        entry["onnxruntime"] = ort_profile(feeds, WORK / "gist-model" / "model.onnx")
        for precision in ("f32", "bf16"):
            proc = subprocess.run(
                [str(PEERS_PY), __file__, "--openvino", workload, precision],
                capture_output=True,
                text=True,
                check=True,
            )
            entry[f"openvino_{precision}"] = json.loads(proc.stdout.strip().splitlines()[-1])
        report[workload] = entry
        print(workload, json.dumps({k: v for k, v in entry.items() if k != "flops"})[:400])
    report["below_fp32"] = below_fp32(batches("passages"))
    (RESULTS / "fp32_profile.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "FP32.md").write_text(render(report))
    print((RESULTS / "FP32.md").read_text())
    return 0


def render(report: dict[str, Any]) -> str:
    from gist_onnx.device import CPU_TOKENS_PER_RUN

    ceiling = report["mlas_gflops"]
    lines = [
        "# fp32: where the time goes, ONNX Runtime beside OpenVINO",
        "",
        "Written by `python benchmarks/studies/fp32_profile.py` on "
        f"{report['machine']}, 2 threads, stand-in weights, the same graph (model.onnx) and "
        "the same batches for both engines "
        f"(runs of at most {CPU_TOKENS_PER_RUN} tokens, length-sorted, as the encoder cuts them; "
        "ONNX Runtime with the encoder's CPU session options). Kernel times are each engine's "
        "own profiler "
        "(one warm pass, then one profiled pass); the profilers add their own overhead, so "
        "compare shares and ratios. The ceiling is ONNX Runtime's fp32 MatMul (MLAS) on a 512 x "
        f"384 x 1,536 product in the same run: {ceiling:.0f} GFLOP/s (numpy's sgemm: "
        f"{report['sgemm_gflops']:.0f}).",
        "",
    ]
    for workload in WORKLOADS:
        entry = report[workload]
        flops = entry["flops"]
        total_flops = flops["projections"] + flops["attention"]
        ort_k = entry["onnxruntime"]["kernel_ms"]
        ov_k = entry["openvino_f32"]["kernel_ms"]
        # ONNX Runtime's Attention holds the Q/K/V projections (3 of the 4 + 2 x 4 = 12 units of
        # 384 x 384 per token) and the attention itself; at MatMul's own rate the projections take:
        qkv = flops["projections"] * 3 / 12
        matmul_rate = (flops["projections"] - qkv) / ort_k.get("MatMul", float("nan")) / 1e6
        core_ms = ort_k.get("Attention", 0) - qkv / matmul_rate / 1e6
        entry["estimates"] = {"ort_matmul_gflops": matmul_rate, "ort_attention_core_ms": core_ms}
        ort_proj = ort_k.get("MatMul", 0) + qkv / matmul_rate / 1e6
        bf16_k = entry["openvino_bf16"]["kernel_ms"]
        proj = {
            "ort": ort_proj,
            "f32": ov_k.get("FullyConnected", 0),
            "bf16": bf16_k.get("FullyConnected", 0),
        }
        rate = {k: flops["projections"] / v / 1e6 for k, v in proj.items()}
        totals = {
            "ort": sum(ort_k.values()),
            "f32": sum(ov_k.values()),
            "bf16": sum(bf16_k.values()),
        }
        lines += [
            f"## {workload} ({entry['runs']} runs, {total_flops / 1e9:.1f} GFLOP of products: "
            f"{flops['projections'] / 1e9:.1f} projections, "
            f"{flops['attention'] / 1e9:.1f} attention)",
            "",
            "| | ONNX Runtime fp32 | OpenVINO f32 | OpenVINO bf16 |",
            "|---|---|---|---|",
            f"| wall, profiled pass (ms) | {entry['onnxruntime']['wall_ms']:.0f} | "
            f"{entry['openvino_f32']['wall_ms']:.0f} | {entry['openvino_bf16']['wall_ms']:.0f} |",
            f"| kernel time, all (ms) | {totals['ort']:.0f} | {totals['f32']:.0f} | "
            f"{totals['bf16']:.0f} |",
            f"| projections (ms; ORT: MatMul + Q/K/V estimated; OV: FullyConnected) | "
            f"{proj['ort']:.0f} | {proj['f32']:.0f} | {proj['bf16']:.0f} |",
            f"| projections' rate (share of the ceiling) | {rate['ort']:.0f} GFLOP/s "
            f"({rate['ort'] / ceiling:.0%}) | {rate['f32']:.0f} GFLOP/s "
            f"({rate['f32'] / ceiling:.0%}) | {rate['bf16']:.0f} GFLOP/s |",
            f"| everything else: attention, norms, GELU... (ms) | "
            f"{totals['ort'] - proj['ort']:.0f} | {totals['f32'] - proj['f32']:.0f} | "
            f"{totals['bf16'] - proj['bf16']:.0f} |",
            "",
            f"ONNX Runtime's MatMul (the projections outside Attention) runs at {matmul_rate:.0f} "
            f"GFLOP/s ({matmul_rate / ceiling:.0%} of the ceiling); at that rate the Q/K/V "
            f"projections inside Attention take {qkv / matmul_rate / 1e6:.0f} ms, which leaves "
            f"~{core_ms:.0f} ms for attention itself ({flops['attention'] / core_ms / 1e6:.0f} "
            "GFLOP/s).",
            "",
            "ONNX Runtime's operators (ms, share):",
            "",
        ]
        total = sum(ort_k.values())
        for op, ms in sorted(ort_k.items(), key=lambda kv: -kv[1])[:8]:
            lines.append(f"- {op}: {ms:.0f} ({ms / total:.0%})")
        lines += ["", "OpenVINO f32's layers (ms, share, main kernel):", ""]
        total = sum(ov_k.values())
        kernels = entry["openvino_f32"]["kernels"]
        for op, ms in sorted(ov_k.items(), key=lambda kv: -kv[1])[:8]:
            kernel = next(iter(kernels.get(op, {})), "")
            lines.append(f"- {op}: {ms:.0f} ({ms / total:.0%}), {kernel}")
        lines += ["", "OpenVINO bf16's layers (ms, main kernel):", ""]
        bf16 = entry["openvino_bf16"]
        for op, ms in sorted(bf16["kernel_ms"].items(), key=lambda kv: -kv[1])[:5]:
            kernel = next(iter(bf16["kernels"].get(op, {})), "")
            lines.append(f"- {op}: {ms:.0f}, {kernel}")
        lines.append("")
    below = report["below_fp32"]
    lines += [
        "## Below fp32 in ONNX Runtime on this CPU",
        "",
        f"ONNX Runtime {below['ort']}, providers {below['providers']}.",
        "",
        f"- a bf16 MatMul graph: `{below['bf16_matmul']}`",
    ]
    for name, ratio in below["ratio_to_fp32"].items():
        ms = below["timed_ms"][name]
        lines.append(f"- {name}: passages in {ms:.0f} ms, {ratio:.2f}x the speed of fp32")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
