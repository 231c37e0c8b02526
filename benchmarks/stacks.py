"""The stacks the benchmarks compare, each loaded as its users would load it.

Every loader returns ``encode(texts, batch_size) -> (n, dim) float32`` and runs on ``threads``
intra-op threads. Loaders import their libraries lazily: a worker process imports only its own
stack, so cold start and memory are the stack's alone (this module imports only what every stack
imports anyway). Stacks marked ``peers`` run in the peers venv (optimum-onnx pins transformers
< 4.58, which the main venv must not take); gist-onnx runs from a venv holding only what
``pip install gist-onnx`` brings, as deployed (its STS quality is scored from the main venv, which
has scipy).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Encode = Callable[[Sequence[str], int], np.ndarray]


@dataclass(frozen=True)
class Stack:
    """One way of running the model: its label, the venv it needs, how it is described."""

    name: str
    label: str
    venv: str  # "main", "peers" or "gist" (only what `pip install gist-onnx` brings)
    precision: str  # "fp32" or "int8" or "fp16"
    note: str
    cuda_only: bool = False  # fp16 stacks: CPU kernels would run them in fp32 or not at all


STACKS: dict[str, Stack] = {
    s.name: s
    for s in [
        Stack("st-torch", "sentence-transformers, torch", "main", "fp32", "the reference"),
        Stack(
            "st-torch-fp16",
            "sentence-transformers, torch fp16",
            "main",
            "fp16",
            "model.half() on CUDA",
            cuda_only=True,
        ),
        Stack(
            "st-onnx-o3",
            "sentence-transformers, ONNX backend, O3",
            "peers",
            "fp32",
            "its export_optimized_onnx_model(O3)",
        ),
        Stack(
            "st-onnx-int8",
            "sentence-transformers, ONNX backend, int8",
            "peers",
            "int8",
            "its export_dynamic_quantized_onnx_model(avx512_vnni)",
        ),
        Stack(
            "fastembed",
            "fastembed, custom model",
            "peers",
            "fp32",
            "add_custom_model(mean, normalized) on onnx/model.onnx",
        ),
        Stack(
            "optimum",
            "optimum ORTModelForFeatureExtraction",
            "peers",
            "fp32",
            "onnx/model.onnx, numpy mean pooling, length-sorted batches",
        ),
        Stack(
            "ct2-int8",
            "CTranslate2 int8_float32",
            "peers",
            "int8",
            "ct2-transformers-converter --quantization int8_float32; the same tokenizer and "
            "length-sorted batches as gist-onnx, numpy mean pooling; for throughput, "
            "inter_threads batches in parallel (one thread each)",
        ),
        Stack(
            "ct2-fp32",
            "CTranslate2 float32",
            "peers",
            "fp32",
            "ct2-transformers-converter --quantization float32; the same batches, inter_threads "
            "batches in parallel for throughput",
        ),
        Stack(
            "openvino-fp32",
            "OpenVINO fp32",
            "peers",
            "fp32",
            "our model.onnx, INFERENCE_PRECISION_HINT f32; the same batches; THROUGHPUT hint "
            "(a stream per thread) for throughput, LATENCY for one batch",
        ),
        Stack(
            "openvino-bf16",
            "OpenVINO bf16",
            "peers",
            "bf16",
            "our model.onnx, INFERENCE_PRECISION_HINT bf16 (its default where the CPU has "
            "AVX512-BF16 or AMX); the same batches; THROUGHPUT hint for throughput",
        ),
        Stack("gist-fp32", "gist-onnx fp32", "gist", "fp32", "model.onnx (fused)"),
        Stack("gist-int8", "gist-onnx int8", "gist", "int8", "model_int8.onnx"),
        Stack(
            "gist-fp16",
            "gist-onnx fp16",
            "gist",
            "fp16",
            "model_fp16.onnx on CUDA, tokenizing ahead (overlap)",
            cuda_only=True,
        ),
    ]
}


def load(
    name: str, *, source_dir: Path, gist_dir: Path, peers_dir: Path, threads: int, device: str
) -> Encode:
    """Load stack ``name``: ``source_dir`` is the sentence-transformers model, ``gist_dir`` its
    gist-onnx export, ``peers_dir`` the folder with the peers' ONNX files (prepare_peers.py)."""
    if name.startswith("gist-"):
        from gist_onnx import GistEncoder

        encoder = GistEncoder(gist_dir, variant=name[5:], threads=threads, device=device)
        return lambda texts, batch: encoder.encode(texts, batch_size=batch)

    if name.startswith(("st-torch", "st-onnx")):
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        if name.startswith("st-torch"):
            model = SentenceTransformer(str(source_dir), device=device)
            # The dtype is the stack's, whatever the folder stores (a GPU check's is fp16).
            model = model.half() if name == "st-torch-fp16" else model.float()
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            file_name = {
                "st-onnx-o3": "onnx/model_O3.onnx",
                "st-onnx-int8": "onnx/model_qint8_avx512_vnni.onnx",
            }[name]
            model = SentenceTransformer(
                str(peers_dir),
                device=device,
                backend="onnx",
                model_kwargs={"file_name": file_name, "session_options": options},
            )
        return lambda texts, batch: np.asarray(
            model.encode(list(texts), batch_size=batch, convert_to_numpy=True), dtype=np.float32
        )

    if name.startswith("ct2-"):
        return _ctranslate2(peers_dir.parent / "ct2-model", gist_dir, name[4:], threads)
    if name.startswith("openvino-"):
        return _openvino(gist_dir, name[9:], threads)
    if name == "fastembed":
        return _fastembed(peers_dir, threads)
    if name == "optimum":
        return _optimum(peers_dir, threads)
    raise ValueError(f"unknown stack {name!r}; known: {', '.join(STACKS)}")


def _max_seq_length(folder: Path) -> int:
    """sentence-transformers' truncation limit for ``folder`` (its two config layouts)."""
    st_config = json.loads((folder / "sentence_bert_config.json").read_text())
    if "max_seq_length" in st_config:
        return int(st_config["max_seq_length"])
    return int(json.loads((folder / "tokenizer_config.json").read_text())["model_max_length"])


def _fastembed(peers_dir: Path, threads: int) -> Encode:
    import shutil

    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    # fastembed truncates at tokenizer_config's model_max_length, which need not be the
    # sentence-transformers limit (512 vs 256 in the original files): a copy pins the latter.
    folder = peers_dir.parent / "fastembed-model"
    if not folder.exists():
        shutil.copytree(peers_dir, folder, ignore=shutil.ignore_patterns("model_*.onnx"))
        config_path = folder / "tokenizer_config.json"
        config = json.loads(config_path.read_text())
        # It takes the smaller of model_max_length and max_length (128 in these files).
        config["model_max_length"] = config["max_length"] = _max_seq_length(peers_dir)
        config_path.write_text(json.dumps(config))
    TextEmbedding.add_custom_model(
        model="local/gist-bench",
        pooling=PoolingType.MEAN,
        normalization=True,
        sources=ModelSource(hf="local/gist-bench"),
        dim=384,
        model_file="onnx/model.onnx",
    )
    model = TextEmbedding("local/gist-bench", specific_model_path=str(folder), threads=threads)
    return lambda texts, batch: np.asarray(
        list(model.embed(list(texts), batch_size=batch)), dtype=np.float32
    )


def _optimum(peers_dir: Path, threads: int) -> Encode:
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForFeatureExtraction
    from transformers import AutoTokenizer

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    model = ORTModelForFeatureExtraction.from_pretrained(
        str(peers_dir), subfolder="onnx", file_name="model.onnx", session_options=options
    )
    tokenizer = AutoTokenizer.from_pretrained(str(peers_dir))
    max_len = _max_seq_length(peers_dir)

    def encode(texts: Sequence[str], batch: int) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            enc = tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=max_len,
                return_tensors="np",
            )
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"][:, :, None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
            out[rows] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out

    return encode


@functools.lru_cache(maxsize=1)
def _gist_tokenizer(gist_dir: Path) -> Any:
    """gist-onnx's tokenizer of ``gist_dir``, loaded once (the peers' venv imports it from the
    checkout)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from gist_onnx.model import read_config
    from gist_onnx.tokenizer import load_tokenizer

    return load_tokenizer(gist_dir, max_length=read_config(gist_dir).max_seq_length)


def _batches(gist_dir: Path, texts: Sequence[str], batch: int) -> list[tuple[list[int], Any]]:
    """gist-onnx's tokenizer and batching for the stacks that run another engine on the same
    model: length-sorted, at most ``batch`` texts and as many padded tokens a run as gist-onnx
    puts in one on the CPU; returns (rows, padded Batch) pairs."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from gist_onnx.device import CPU_TOKENS_PER_RUN
    from gist_onnx.planner import cut_runs

    tokenizer = _gist_tokenizer(gist_dir)
    encodings = tokenizer.tokenize(list(texts))
    lengths = [len(e) for e in encodings]
    return [
        (rows, tokenizer.pad([encodings[i] for i in rows]))
        for rows in cut_runs(lengths, batch, CPU_TOKENS_PER_RUN)
    ]


# Each engine runs a call of several batches the way its documentation says to for throughput,
# as gist-onnx runs several runs at once: CTranslate2 with ``inter_threads`` batches in parallel
# (one thread each), OpenVINO with its THROUGHPUT hint (one stream per thread, an async queue).
# A call of one batch keeps the latency set-up, all threads on one batch. The throughput set-up
# is made at the first call that needs it, so cold start and one-query latency stay the
# engine's latency set-up alone.


def _ctranslate2(ct2_root: Path, gist_dir: Path, kind: str, threads: int) -> Encode:
    import ctranslate2

    compute = {"int8": "int8_float32", "fp32": "float32"}[kind]
    path = str(ct2_root / compute)
    latency = ctranslate2.Encoder(
        path, device="cpu", compute_type=compute, inter_threads=1, intra_threads=threads
    )
    throughput: list[Any] = []  # (encoder, pool), made at the first call of several batches

    def encode(texts: Sequence[str], batch: int) -> np.ndarray:
        out = np.empty((len(texts), 384), dtype=np.float32)
        runs = _batches(gist_dir, texts, batch)
        if len(runs) > 1 and threads > 1 and not throughput:
            from concurrent.futures import ThreadPoolExecutor

            parallel = ctranslate2.Encoder(
                path, device="cpu", compute_type=compute, inter_threads=threads, intra_threads=1
            )
            throughput.append((parallel, ThreadPoolExecutor(threads)))
        encoder = throughput[0][0] if len(runs) > 1 and throughput else latency

        def one(run: tuple[list[int], Any]) -> None:
            rows, padded = run
            mask = padded.attention_mask
            lengths = mask.sum(1)
            ids = [row[: int(n)].tolist() for row, n in zip(padded.input_ids, lengths, strict=True)]
            hidden = np.asarray(encoder.forward_batch(ids).last_hidden_state, dtype=np.float32)
            weights = mask[:, : hidden.shape[1], None].astype(np.float32)
            pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
            out[rows] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

        if encoder is latency:
            for run in runs:
                one(run)
        else:
            list(throughput[0][1].map(one, runs))  # forward_batch releases the GIL
        return out

    return encode


def _openvino(gist_dir: Path, kind: str, threads: int) -> Encode:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(gist_dir / "model.onnx"))
    precision = {"fp32": "f32", "bf16": "bf16"}[kind]

    def compile_for(hint: str) -> Any:
        config: dict[str, Any] = {
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": precision,
            "PERFORMANCE_HINT": hint,
        }
        if hint == "THROUGHPUT":
            config["NUM_STREAMS"] = threads
        return core.compile_model(model, "CPU", config)

    latency = compile_for("LATENCY")
    request = latency.create_infer_request()
    output = latency.output(0)
    queue: list[Any] = []  # AsyncInferQueue over the THROUGHPUT model, made when first needed

    def encode(texts: Sequence[str], batch: int) -> np.ndarray:
        out = np.empty((len(texts), 384), dtype=np.float32)
        runs = _batches(gist_dir, texts, batch)

        def feed(padded: Any) -> dict[str, np.ndarray]:
            return {
                "input_ids": padded.input_ids,
                "attention_mask": padded.attention_mask,
                "token_type_ids": padded.token_type_ids,
            }

        if len(runs) == 1 or threads == 1:
            for rows, padded in runs:
                out[rows] = request.infer(feed(padded))[output]  # pooled, normalized inside
            return out
        if not queue:
            infer_queue = ov.AsyncInferQueue(compile_for("THROUGHPUT"), threads)

            def done(req: Any, target: tuple[np.ndarray, list[int]]) -> None:
                into, rows = target
                into[rows] = req.get_output_tensor(0).data  # copied out of the request

            infer_queue.set_callback(done)
            queue.append(infer_queue)
        for rows, padded in runs:
            queue[0].start_async(feed(padded), (out, rows))
        queue[0].wait_all()
        return out

    return encode
