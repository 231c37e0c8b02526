"""The CUDA check, ready for a GPU machine that has no package index: parity of the fp16 graph,
overlap against the plain loop, and end-to-end speed against torch fp32 and fp16 on the same GPU.

    # here, once: the model folder to carry, with reference vectors from torch on the CPU
    python benchmarks/gpu_check.py prepare --out .gpu
    # there (after onnxruntime-gpu is installed, see benchmarks/README.md):
    python benchmarks/gpu_check.py run --folder .gpu --device cuda --report $OUT/gpu.json
    # the same checks on this machine's CPU, to try the script:
    python benchmarks/gpu_check.py run --folder .gpu --device cpu --variant fp32

`prepare` writes into --out three folders of under 64 MiB each, one transfer each: model/ (the
fp16 graph, or --variant's, the tokenizer and configs), data/ (the check texts and
sentence-transformers' vectors of them, made by torch fp32 on the CPU; STS-B sentences and
~200-word passages for the speed runs) and, with --weights, torch/ (the model's weights for the
torch rows, stored in fp16: 45 MB). `run` needs only gist-onnx's runtime (and torch +
transformers for the torch rows, skipped without them).
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
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "export"))


def prepare(out: Path, variant: str, weights: bool) -> None:
    from sentence_transformers import SentenceTransformer

    from common import model_folder, stand_in
    from gist_onnx.export.texts import PARITY_TEXTS
    from sts import load_sts

    source, exported = stand_in(), model_folder()
    model_dir = out / "model"
    if out.exists():
        shutil.rmtree(out)
    model_dir.mkdir(parents=True)
    graph = {"fp32": "model.onnx", "fp16": "model_fp16.onnx", "int8": "model_int8.onnx"}[variant]
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
        # Stored in fp16 (45 MB, so that it fits one transfer); the fp32 rows load it upcast,
        # which changes no timing.
        from transformers import AutoModel

        AutoModel.from_pretrained(str(source)).half().save_pretrained(str(out / "torch"))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(f"wrote {out} ({size:.0f} MiB)")


def timed(fn: Any, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(folder: Path, device: str, variant: str, report: Path | None) -> int:
    from gist_onnx import GistEncoder

    texts = json.loads((folder / "data" / "texts.json").read_text())
    reference = np.load(folder / "data" / "reference.npy")
    result: dict[str, Any] = {"device": device, "variant": variant}
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
    sentences, passages = texts["sentences"], texts["passages"]
    speed: dict[str, dict[str, float]] = {}
    for label, encoder in (("gist-onnx overlap", overlapped), ("gist-onnx plain", plain)):
        speed[label] = {
            "sentences_per_s": len(sentences)
            / timed(lambda e=encoder: e.encode(sentences, batch_size=128), 3),
            "passages_per_s": len(passages)
            / timed(lambda e=encoder: e.encode(passages, batch_size=128), 3),
            "one_query_ms": 1000 * timed(lambda e=encoder: e.encode(["capital of France"]), 50),
        }
    speed |= torch_rows(folder, device, sentences, passages)
    result["speed"] = speed
    text = json.dumps(result, indent=2)
    print(text)
    if report is not None:
        report.write_text(text + "\n")
    return 0


def torch_rows(
    folder: Path, device: str, sentences: list[str], passages: list[str]
) -> dict[str, dict[str, float]]:
    """transformers' BERT with sentence-transformers' mean pooling and normalization, fp32 and
    fp16, on the same device: what sentence-transformers runs (skipped without torch or weights)."""
    try:
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        return {}
    if not (folder / "torch" / "model.safetensors").is_file():
        return {}
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "model"))
    rows: dict[str, dict[str, float]] = {}
    for dtype in (torch.float32, torch.float16):
        if dtype == torch.float16 and device != "cuda":
            continue
        model = AutoModel.from_pretrained(str(folder / "torch"), dtype=dtype).to(device)
        model.eval()

        def encode(batch: list[str], model: Any = model) -> np.ndarray:
            out = []
            ordered = sorted(batch, key=len)
            with torch.inference_mode():
                for start in range(0, len(ordered), 128):
                    enc = tokenizer(
                        ordered[start : start + 128],
                        padding=True,
                        truncation=True,
                        max_length=256,
                        return_tensors="pt",
                    ).to(device)
                    hidden = model(**enc).last_hidden_state
                    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                    out.append(torch.nn.functional.normalize(pooled.float(), dim=1).cpu())
            return torch.cat(out).numpy()

        rows[f"torch {str(dtype).split('.')[-1]}"] = {
            "sentences_per_s": len(sentences) / timed(lambda: encode(sentences), 3),
            "passages_per_s": len(passages) / timed(lambda: encode(passages), 3),
            "one_query_ms": 1000 * timed(lambda: encode(["capital of France"]), 50),
        }
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="write the folder to carry to the GPU machine")
    prep.add_argument("--out", type=Path, default=HERE.parent / ".gpu")
    prep.add_argument("--variant", default="fp16")
    prep.add_argument("--weights", action="store_true", help="add the safetensors (torch rows)")
    check = commands.add_parser("run", help="run the checks (on the GPU machine)")
    check.add_argument("--folder", type=Path, default=HERE.parent / ".gpu")
    check.add_argument("--device", default="cuda")
    check.add_argument("--variant", default="fp16")
    check.add_argument("--report", type=Path, default=None)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out, args.variant, args.weights)
        return 0
    return run(args.folder, args.device, args.variant, args.report)


if __name__ == "__main__":
    raise SystemExit(main())
