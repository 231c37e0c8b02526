"""The CUDA check, ready for a GPU machine that has no package index: parity of the fp16 graph,
overlap against the plain loop, and end-to-end speed against sentence-transformers fp32 and fp16
on the same GPU; and a probe of where an encode's time goes.

    # here, once: the folders to carry, with reference vectors from torch on the CPU, then the
    # runtime and those folders cut into pieces of one transfer each
    python benchmarks/gpu/gpu_check.py prepare --out .gpu --weights
    python benchmarks/gpu/gpu_check.py pack --folder .gpu
    # there, with every piece copied into /tmp/ch (see benchmarks/README.md):
    python3 benchmarks/gpu/gpu_check.py unpack && export PYTHONPATH=/tmp/site:.
    python3 benchmarks/gpu/gpu_check.py run --folder /tmp/gpu --device cuda --report gpu.json
    python3 benchmarks/gpu/gpu_check.py probe --folder /tmp/gpu --report probe.json
    # the same checks on this machine's CPU, to try the script:
    python benchmarks/gpu/gpu_check.py prepare --out /tmp/cpu --variant fp32 --weights
    python benchmarks/gpu/gpu_check.py run --folder /tmp/cpu --device cpu --variant fp32 --scale 1

`prepare` writes into --out three folders of under 64 MiB each: model/ (the fp16 graph, or
--variant's, the tokenizer and configs), data/ (the check texts and sentence-transformers' vectors
of them, made by torch fp32 on the CPU; STS-B sentences and ~200-word passages for the speed runs)
and, with --weights, torch/ (the model as a sentence-transformers folder, weights stored in fp16:
45 MB). `pack` puts onnxruntime-gpu's wheel and those folders into one stream cut into pieces that
each fit one transfer. `run` needs only gist-onnx's runtime (and sentence-transformers for the
torch rows, skipped without it); it exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]  # the clone
sys.path.insert(0, str(ROOT))  # the clone first: its gist_onnx, tests.support, export.sts
sys.path.insert(1, str(HERE.parent))  # the harness's helpers (common)

from gist_onnx.model.layout import exported_graph  # noqa: E402

GRAPHS = {variant: exported_graph(variant) for variant in ("fp32", "fp16", "int8")}


def prepare(out: Path, variant: str, weights: bool) -> None:
    from sentence_transformers import SentenceTransformer

    from common import model_folder, stand_in
    from export.sts import load_sts
    from gist_onnx.export.texts import PARITY_TEXTS

    source, exported = stand_in(), model_folder()
    model_dir = out / "model"
    if out.exists():
        shutil.rmtree(out)
    model_dir.mkdir(parents=True)
    graph = GRAPHS[variant]
    names = [graph, f"{graph}.data", "tokenizer.json", "tokenizer_config.json", "config.json"]
    names += ["modules.json", "sentence_bert_config.json", "1_Pooling/config.json"]
    for name in names:
        (model_dir / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(exported / name, model_dir / name)
    reference = SentenceTransformer(str(source), device="cpu").encode(list(PARITY_TEXTS))
    (out / "data").mkdir()
    np.save(out / "data" / "reference.npy", np.asarray(reference, dtype=np.float32))
    stsb = load_sts("stsb")
    passages, current = [], []
    for sentence in stsb.first + stsb.second:
        current.append(sentence)
        if sum(len(s.split()) for s in current) >= 200:
            passages.append(" ".join(current))
            current = []
    texts = {"check": list(PARITY_TEXTS), "sentences": stsb.sentences, "passages": passages}
    (out / "data" / "texts.json").write_text(json.dumps(texts))
    if weights:
        # sentence-transformers' own folder, weights stored in fp16 (45 MB, so that it fits one
        # transfer); the fp32 rows load it upcast, which changes no timing.
        SentenceTransformer(str(source), device="cpu").half().save(str(out / "torch"))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(f"wrote {out} ({size:.0f} MiB)")


def runs_of(encoder: Any, texts: list[str], batch_size: int, by_batch: bool) -> Any:
    """The graph runs ``encoder.encode`` would make of ``texts`` (tokenized and padded, not run):
    the planner's public interface with the encoder's tokenizer, ``by_batch`` as with overlap."""
    from gist_onnx import planner

    return planner.plan(
        iter(texts),
        batch_size,
        tokenize=lambda part, offset, positions: encoder.tokenizer.tokenize(part),
        pad=encoder.tokenizer.pad,
        check=lambda chunk, offset: None,
        cap=encoder.profile.settings.tokens_per_run,
        by_batch=by_batch,
    )


def timed(fn: Any, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def environment(device: str) -> dict[str, str]:
    """What ran the check: the runtime's version and, with CUDA, the GPU's name."""
    import onnxruntime as ort

    info = {"onnxruntime": ort.__version__}
    try:
        import torch

        if device == "cuda" and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


def run(folder: Path, device: str, variant: str, report: Path | None, scale: int) -> int:
    from gist_onnx import GistEncoder

    texts = json.loads((folder / "data" / "texts.json").read_text())
    reference = np.load(folder / "data" / "reference.npy")
    result: dict[str, Any] = {"device": device, "variant": variant} | environment(device)
    overlapped = GistEncoder(folder / "model", variant=variant, device=device, overlap=True)
    plain = GistEncoder(folder / "model", variant=variant, device=device, overlap=False)
    result["provider"] = overlapped.provider
    vectors = overlapped.encode(texts["check"], batch_size=4)
    cosine = (vectors * reference).sum(1)
    result["parity_worst_cosine"] = float(cosine.min())
    result["parity_mean_cosine"] = float(cosine.mean())
    result["overlap_max_abs_diff"] = float(
        np.abs(plain.encode(texts["check"], batch_size=4) - vectors).max()
    )
    # The same checks as the test tier's CUDA test (tests/test_parity.py).
    checks = {
        "parity_worst_cosine >= 0.999": result["parity_worst_cosine"] >= 0.999,
        "overlap_max_abs_diff <= 1e-6": result["overlap_max_abs_diff"] <= 1e-6,
    }
    result["checks_passed"] = all(checks.values())
    result["checks"] = checks
    # A GPU runs the plain lists in tens of milliseconds: --scale repeats them for steadier timing.
    sentences, passages = texts["sentences"] * scale, texts["passages"] * scale
    result["texts"] = {"sentences": len(sentences), "passages": len(passages)}
    speed = {"tokenize only": tokenize_only(folder, sentences, passages)}
    for label, encoder in (("gist-onnx overlap", overlapped), ("gist-onnx plain", plain)):
        speed[label] = {
            "sentences_per_s": len(sentences)
            / timed(lambda e=encoder: e.encode(sentences, batch_size=128), 5),
            "passages_per_s": len(passages)
            / timed(lambda e=encoder: e.encode(passages, batch_size=128), 5),
            "one_query_ms": 1000 * timed(lambda e=encoder: e.encode(["capital of France"]), 50),
        }
    speed |= torch_rows(folder, device, sentences, passages)
    result["speed"] = speed
    text = json.dumps(result, indent=2)
    print(text)
    if report is not None:
        report.write_text(text + "\n")
    return 0 if result["checks_passed"] else 1


def tokenize_only(folder: Path, sentences: list[str], passages: list[str]) -> dict[str, float]:
    """The tokenizer alone (``tokenizers``' batch encoding on every core, truncated at 256): the
    ceiling of any end-to-end figure on a GPU that outruns it."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "model" / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.no_padding()
    return {
        "sentences_per_s": len(sentences) / timed(lambda: tokenizer.encode_batch(sentences), 3),
        "passages_per_s": len(passages) / timed(lambda: tokenizer.encode_batch(passages), 3),
    }


def torch_rows(
    folder: Path, device: str, sentences: list[str], passages: list[str]
) -> dict[str, dict[str, float]]:
    """sentence-transformers itself, fp32 and fp16 (``.half()``), batch 128 as gist-onnx's rows,
    on the same device (skipped without sentence-transformers or the weights)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return {}
    if not (folder / "torch" / "modules.json").is_file():
        return {}
    rows: dict[str, dict[str, float]] = {}
    for dtype in ("float32", "float16"):
        if dtype == "float16" and device != "cuda":
            continue
        model = SentenceTransformer(str(folder / "torch"), device=device)
        model = model.half() if dtype == "float16" else model.float()

        def encode(batch: list[str], model: Any = model) -> np.ndarray:
            return model.encode(batch, batch_size=128, normalize_embeddings=True)

        rows[f"sentence-transformers {dtype}"] = {
            "sentences_per_s": len(sentences) / timed(lambda: encode(sentences), 5),
            "passages_per_s": len(passages) / timed(lambda: encode(passages), 5),
            "one_query_ms": 1000 * timed(lambda: encode(["capital of France"]), 50),
        }
    return rows


def probe(
    folder: Path,
    device: str,
    variant: str,
    report: Path | None,
    scale: int,
    *,
    query_only: bool,
) -> int:
    """Where the time of an encode goes on this device: the graph ONNX Runtime runs, the host's
    side alone (tokenize, sort, pad), the graph alone, end to end by mode and batch size, and one
    query's parts."""
    import onnxruntime as ort

    from gist_onnx import GistEncoder

    texts = json.loads((folder / "data" / "texts.json").read_text())
    workloads = {"sentences": texts["sentences"] * scale, "passages": texts["passages"] * scale}
    result: dict[str, Any] = {"device": device, "variant": variant} | environment(device)
    # The usual session for every row; the CUDA graph has rows of its own (replayed_query).
    encoder = GistEncoder(folder / "model", variant=variant, device=device, cuda_graph=False)
    # The graph as ONNX Runtime runs it here, after its own fusions at load.
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(folder / "optimized.onnx")
    ort.InferenceSession(str(encoder.files.graph), options, providers=encoder.session.providers)
    try:
        import onnx

        graph = onnx.load(str(folder / "optimized.onnx"), load_external_data=False).graph
        ops: dict[str, int] = {}
        for node in graph.node:
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
        result["ops_at_load"] = dict(sorted(ops.items(), key=lambda kv: -kv[1]))
    except ImportError:
        pass
    rows: dict[str, Any] = {}
    groups = {"whole chunk": False, "per batch": True}
    for name, batch in workloads.items() if not query_only else ():
        for label, by_batch in groups.items():
            seconds = timed(
                lambda b=batch, g=by_batch: sum(1 for _ in runs_of(encoder, b, 128, g)), 3
            )
            rows[f"host only ({label}) {name}/s"] = len(batch) / seconds
        runs = [run.batch for run in runs_of(encoder, batch, 128, encoder.overlap)]
        seconds = timed(lambda r=runs: [encoder.session.run(b) for b in r], 3)
        rows[f"graph only {name}/s"] = len(batch) / seconds
        rows[f"graph only {name} tokens/s"] = sum(b.attention_mask.size for b in runs) / seconds
        for label, overlap, size in (
            ("per batch", True, 128), ("plain", False, 128), ("per batch", True, 512),
        ):  # fmt: skip
            encoder.overlap = overlap
            seconds = timed(lambda b=batch, n=size: encoder.encode(b, batch_size=n), 3)
            rows[f"encode {label} batch {size} {name}/s"] = len(batch) / seconds
    encoder.overlap = True
    query = ["capital of France"]
    one = encoder.tokenizer(query)
    rows["one query: encode ms"] = 1000 * timed(lambda: encoder.encode(query), 100)
    rows["one query: tokenize + pad ms"] = 1000 * timed(lambda: encoder.tokenizer(query), 100)
    rows["one query: graph ms"] = 1000 * timed(lambda: encoder.session.run(one), 100)
    if device == "cuda":
        session = encoder.session.session
        binding = session.io_binding()
        for name in encoder.session.info.inputs:
            value = ort.OrtValue.ortvalue_from_numpy(getattr(one, name), "cuda", 0)
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(encoder.session.info.output, "cuda")
        rows["one query: graph, inputs already on the GPU ms"] = 1000 * timed(
            lambda: session.run_with_iobinding(binding), 100
        )
    rows |= replayed_query(encoder, query)
    single = GistEncoder(
        folder / "model", variant=variant, device=device, threads=1, cuda_graph=False
    )
    rows["one query: encode, 1 CPU thread ms"] = 1000 * timed(lambda: single.encode(query), 100)
    result["rows"] = rows
    text = json.dumps(result, indent=2)
    print(text)
    if report is not None:
        report.write_text(text + "\n")
    return 0


def replayed_query(encoder: Any, query: list[str]) -> dict[str, Any]:
    """One query through gist-onnx's ReplayedGraph: with CUDA, captured once as a CUDA graph over
    fixed (1, 32) input buffers and replayed (on the CPU the same buffers without a capture, to
    try the script). Its vector against the usual session's, and its latency."""
    from gist_onnx.session import ReplayedGraph

    try:
        replay = ReplayedGraph(encoder.files.graph, encoder.session.providers)
    except Exception as exc:  # noqa: BLE001 -- what failed is the finding
        return {"one query: CUDA graph": f"failed: {type(exc).__name__}: {exc}"[:600]}

    def encode() -> np.ndarray:
        return replay.run(encoder.tokenizer(query))

    return {
        "one query: CUDA graph, padded to 32, encode ms": 1000 * timed(encode, 100),
        "one query: CUDA graph max abs diff": float(np.abs(encode() - encoder.encode(query)).max()),
    }


# A transfer to the GPU machine carries at most 64 MiB with the repository; a piece leaves room.
PIECE_BYTES = 62 * 2**20
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64")


def pack(folder: Path, wheel: Path | None, version: str) -> None:
    """One stream, cut into pieces under ``folder/pieces/pN``: onnxruntime-gpu's wheel unpacked
    (its TensorRT provider left out) as an xz tar, then model/, data/ and torch/ as a plain tar.
    xz takes the CUDA library from 200 to ~185 MB: one transfer fewer."""
    import io
    import subprocess
    import tarfile
    import zipfile

    if wheel is None:
        download = folder / "dl"
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--python-version", "3.12", "--implementation", "cp",
             *[arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)],
             "-d", str(download), f"onnxruntime-gpu=={version}"],
            check=True,
        )  # fmt: skip
        wheel = next(download.glob("onnxruntime_gpu-*.whl"))
    runtime = io.BytesIO()
    with (
        zipfile.ZipFile(wheel) as archive,
        tarfile.open(fileobj=runtime, mode="w:xz", preset=9) as tar,
    ):
        for member in archive.infolist():
            if member.is_dir() or "providers_tensorrt" in member.filename:
                continue
            data = archive.read(member)
            info = tarfile.TarInfo(member.filename)
            info.size, info.mode = len(data), 0o755 if member.filename.endswith(".so") else 0o644
            tar.addfile(info, io.BytesIO(data))
    rest = io.BytesIO()
    with tarfile.open(fileobj=rest, mode="w") as tar:
        for name in ("model", "data", "torch"):
            if (folder / name).is_dir():
                tar.add(folder / name, arcname=name)
    stream = runtime.getvalue() + rest.getvalue()
    pieces = folder / "pieces"
    shutil.rmtree(pieces, ignore_errors=True)
    count = -(-len(stream) // PIECE_BYTES)
    for n in range(count):
        (pieces / f"p{n}").mkdir(parents=True)
        (pieces / f"p{n}" / f"piece.{n}").write_bytes(
            stream[n * PIECE_BYTES : (n + 1) * PIECE_BYTES]
        )
    layout = {"runtime_bytes": len(runtime.getvalue()), "total_bytes": len(stream), "pieces": count}
    (pieces / f"p{count - 1}" / "layout.json").write_text(json.dumps(layout))
    print(f"{count} pieces under {pieces} ({len(stream) / 2**20:.0f} MiB)")


def unpack(pieces: Path, site: Path, folder: Path) -> None:
    """Join the pieces copied into ``pieces`` and unpack the runtime into ``site`` (for
    PYTHONPATH) and model/, data/, torch/ into ``folder``."""
    import io
    import tarfile

    layout = json.loads((pieces / "layout.json").read_text())
    names = [pieces / f"piece.{n}" for n in range(layout["pieces"])]
    missing = [str(p) for p in names if not p.is_file()]
    if missing:
        raise SystemExit(f"missing pieces {missing}: the machine went cold between transfers")
    stream = b"".join(p.read_bytes() for p in names)
    if len(stream) != layout["total_bytes"]:
        raise SystemExit(f"{len(stream)} bytes joined, {layout['total_bytes']} packed")
    cut = layout["runtime_bytes"]
    with tarfile.open(fileobj=io.BytesIO(stream[:cut]), mode="r:xz") as tar:
        tar.extractall(site, filter="data")
    with tarfile.open(fileobj=io.BytesIO(stream[cut:]), mode="r:") as tar:
        tar.extractall(folder, filter="data")
    print(f"unpacked the runtime into {site} and the model into {folder}")


# How a fresh process pays for each new input shape (``shapes``): ONNX Runtime's CUDA attention
# picks and loads its kernels per sequence length. Each configuration runs in its own process.
SHAPE_CONFIGS: dict[str, dict[str, str]] = {
    "default": {},
    "no TensorRT fused attention": {"ORT_DISABLE_FUSED_ATTENTION": "1"},
    "memory-efficient attention only": {
        "ORT_DISABLE_FUSED_ATTENTION": "1",
        "ORT_DISABLE_TRT_FLASH_ATTENTION": "1",
        "ORT_DISABLE_FLASH_ATTENTION": "1",
    },
}


def shapes(
    folder: Path, device: str, variant: str, report: Path | None, *, settings: bool = False
) -> int:
    """First run of each new shape against later runs, per attention configuration; then a fresh
    encoder's first, second and third pass over the workloads, padded as usual and to multiples of
    8 and 16 tokens (each in its own process)."""
    import os
    import subprocess

    result: dict[str, Any] = {"device": device, "variant": variant} | environment(device)
    jobs = [(name, env, "session", 1) for name, env in SHAPE_CONFIGS.items()]
    jobs += [(f"encode, pad to {m}", {}, "encode", m) for m in (1, 8, 16)]
    if settings:
        jobs = [(name, {}, "settings", 1) for name in SHAPE_SETTINGS]
    for name, extra, what, multiple in jobs:
        cmd = [sys.executable, __file__, "shapes-one", "--folder", str(folder), "--device", device,
               "--variant", variant, "--what", what, "--pad-multiple", str(multiple),
               "--setting", name]  # fmt: skip
        env = os.environ | extra
        done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
        lines = done.stdout.strip().splitlines()
        result[name] = json.loads(lines[-1]) if done.returncode == 0 else done.stderr[-2000:]
        print(name, json.dumps(result[name])[:400], flush=True)
    if report:
        report.write_text(json.dumps(result, indent=2))
    return 0


# The widths ``shapes`` runs, each new to the session: 26 of them, 10 to 60 tokens.
SHAPE_WIDTHS = range(10, 62, 2)


def probe_ids(width: int) -> np.ndarray:
    """32 texts of ``width`` tokens: [CLS], the same word, [SEP]."""
    ids = np.full((32, width), 2023, dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    return ids


def first_and_later(run: Any, repeats: int) -> dict[str, Any]:
    """``run(width)``'s first time at each of SHAPE_WIDTHS against the median of later ones."""
    first, later = [], []
    for width in SHAPE_WIDTHS:
        start = time.perf_counter()
        run(width)
        first.append(time.perf_counter() - start)
        later.append(timed(lambda w=width: run(w), repeats))
    return {
        "first run ms (median)": 1000 * statistics.median(first),
        "later runs ms (median)": 1000 * statistics.median(later),
        "first run ms (each)": [round(1000 * t, 2) for t in first],
    }


# Session settings that might change what a new shape costs (``shapes --settings``), each run on
# a plain ONNX Runtime session in its own process: (session options, CUDA provider options).
SHAPE_SETTINGS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "plain session": ({}, {}),
    "no memory pattern": ({"enable_mem_pattern": False}, {}),
    "arena as requested": ({}, {"arena_extend_strategy": "kSameAsRequested"}),
    "cuDNN default search": ({}, {"cudnn_conv_algo_search": "DEFAULT"}),
    "no memory pattern, arena as requested": (
        {"enable_mem_pattern": False},
        {"arena_extend_strategy": "kSameAsRequested"},
    ),
    "profiled": ({"enable_profiling": True}, {}),
    # GistEncoder's CUDA session differs from a plain one in these (its new widths cost ~2x)
    "threads not spinning (the encoder's CUDA setting)": (
        {
            "config:session.intra_op.allow_spinning": "0",
            "config:session.inter_op.allow_spinning": "0",
        },
        {},
    ),
    "log severity 3": ({"log_severity_level": 3}, {}),
}


def settings_one(folder: Path, variant: str, name: str) -> None:
    """One process of ``shapes --settings``: a plain session with ``SHAPE_SETTINGS[name]``; the
    first run of 26 new shapes against later runs; profiled, the operators' time in the first and
    second run of one new shape."""
    import onnxruntime as ort

    session_options, cuda_options = SHAPE_SETTINGS[name]
    options = ort.SessionOptions()
    for key, value in session_options.items():
        if key.startswith("config:"):
            options.add_session_config_entry(key[len("config:") :], str(value))
        else:
            setattr(options, key, value)
    if session_options.get("enable_profiling"):
        import tempfile

        options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    graph = GRAPHS[variant]
    providers = [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"]
    session = ort.InferenceSession(str(folder / "model" / graph), options, providers=providers)
    names = [i.name for i in session.get_inputs()]

    def feed(width: int) -> dict[str, np.ndarray]:
        ids = probe_ids(width)
        arrays = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        return {n: arrays.get(n, np.zeros_like(ids)) for n in names}

    session.run(None, feed(8))
    out: dict[str, Any] = {"providers": session.get_providers()}
    out |= first_and_later(lambda width: session.run(None, feed(width)), 3)
    if session_options.get("enable_profiling"):
        profile = Path(session.end_profiling())
        events = json.loads(profile.read_text())
        shutil.rmtree(profile.parent)
        runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
        # the first and the second run of the shape (32, 10): runs 1 and 2 (run 0 was (32, 8))
        for label, run in (("first run of a shape", runs[1]), ("second run", runs[2])):
            ops: dict[str, float] = {}
            for e in events:
                if e.get("cat") == "Node" and run["ts"] <= e["ts"] <= run["ts"] + run["dur"]:
                    op = e.get("args", {}).get("op_name", e["name"])
                    ops[op] = ops.get(op, 0.0) + e["dur"] / 1000
            top = sorted(ops.items(), key=lambda kv: -kv[1])[:10]
            out[f"{label}: ms"] = run["dur"] / 1000
            out[f"{label}: ms by operator"] = {k: round(v, 3) for k, v in top}
    print(json.dumps(out))


def shapes_one(folder: Path, device: str, variant: str, what: str, multiple: int) -> None:
    """One process of ``shapes``: prints one JSON line."""
    from gist_onnx import GistEncoder
    from gist_onnx.tokenizer import Batch

    encoder = GistEncoder(folder / "model", variant=variant, device=device, cuda_graph=False)
    encoder.tokenizer.pad_multiple = multiple
    if what == "session":

        def run(width: int) -> None:
            ids = probe_ids(width)
            encoder.session.run(Batch(ids, np.ones_like(ids), np.zeros_like(ids)))

        print(json.dumps(first_and_later(run, 5)))
        return
    texts = json.loads((folder / "data" / "texts.json").read_text())
    out: dict[str, Any] = {}
    loads = {"sentences": texts["sentences"][:1024], "passages": texts["passages"][:128]}
    for name, batch in loads.items():
        runs = [run.batch for run in runs_of(encoder, batch, 32, encoder.overlap)]
        out[f"{name} shapes"] = len({b.input_ids.shape for b in runs})
        for n in (1, 2, 3):
            start = time.perf_counter()
            encoder.encode(batch, batch_size=32)
            out[f"{name}/s pass {n}"] = len(batch) / (time.perf_counter() - start)
    print(json.dumps(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="write the folder to carry to the GPU machine")
    prep.add_argument("--out", type=Path, default=ROOT / ".gpu")
    prep.add_argument("--variant", default="fp16")
    prep.add_argument("--weights", action="store_true", help="add the safetensors (torch rows)")

    def on_gpu(name: str, help_: str) -> argparse.ArgumentParser:
        """A command that runs on the GPU machine: the unpacked folder, device, graph, report."""
        command = commands.add_parser(name, help=help_)
        command.add_argument("--folder", type=Path, default=ROOT / ".gpu")
        command.add_argument("--device", default="cuda")
        command.add_argument("--variant", default="fp16")
        command.add_argument("--report", type=Path, default=None)
        return command

    check = on_gpu("run", "run the checks (on the GPU machine)")
    check.add_argument("--scale", type=int, default=8, help="repeat the speed texts this often")
    look = on_gpu("probe", "where an encode's time goes (on the GPU machine)")
    look.add_argument("--scale", type=int, default=8)
    look.add_argument("--query-only", action="store_true", help="one query's rows alone")
    shape = on_gpu("shapes", "what a new input shape costs (on the GPU machine)")
    shape.add_argument("--settings", action="store_true", help="session settings, one profiled")
    one = commands.add_parser("shapes-one", help="one process of shapes (run by it)")
    one.add_argument("--folder", type=Path, required=True)
    one.add_argument("--device", required=True)
    one.add_argument("--variant", required=True)
    one.add_argument("--what", choices=("session", "encode", "settings"), required=True)
    one.add_argument("--setting", default="")
    one.add_argument("--pad-multiple", type=int, default=1)
    packer = commands.add_parser("pack", help="cut the runtime and the folders into transfers")
    packer.add_argument("--folder", type=Path, default=ROOT / ".gpu")
    packer.add_argument("--wheel", type=Path, default=None, help="default: download it")
    packer.add_argument("--ort-version", default="1.31.1")
    unpacker = commands.add_parser("unpack", help="join and unpack the pieces (on the GPU machine)")
    unpacker.add_argument("--pieces", type=Path, default=Path("/tmp/ch"))
    unpacker.add_argument("--site", type=Path, default=Path("/tmp/site"))
    unpacker.add_argument("--folder", type=Path, default=Path("/tmp/gpu"))
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out, args.variant, args.weights)
        return 0
    if args.command == "probe":
        return probe(
            args.folder,
            args.device,
            args.variant,
            args.report,
            args.scale,
            query_only=args.query_only,
        )
    if args.command in ("shapes", "shapes-one"):
        if args.command == "shapes":
            return shapes(
                args.folder, args.device, args.variant, args.report, settings=args.settings
            )
        if args.what == "settings":
            settings_one(args.folder, args.variant, args.setting)
        else:
            shapes_one(args.folder, args.device, args.variant, args.what, args.pad_multiple)
        return 0
    if args.command in ("pack", "unpack"):
        if args.command == "pack":
            pack(args.folder, args.wheel, args.ort_version)
        else:
            unpack(args.pieces, args.site, args.folder)
        return 0
    return run(args.folder, args.device, args.variant, args.report, args.scale)


if __name__ == "__main__":
    raise SystemExit(main())
