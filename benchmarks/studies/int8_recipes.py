"""Measure the int8 recipes tried for the export, side by side; write benchmarks/results/INT8.md.

    python benchmarks/studies/int8_recipes.py [--model DIR] [--repeats 3]

For each recipe: worst and mean cosine to sentence-transformers (torch fp32) over the export's 43
check texts plus the STS-B sentences; batch dependence (worst cosine between the vectors of one
batch and of one text at a time, on the 43 texts); sentences/s at batch 32 (median of --repeats,
through gist-onnx, 2 threads); file size. Speeds here only compare recipes within one run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))  # the clone, last: tests.support, export.sts

from export.sts import load_sts  # noqa: E402
from gist_onnx import GistEncoder  # noqa: E402
from gist_onnx.export.build import (  # noqa: E402
    OUTLIER_CHANNELS,
    SMOOTHING_ALPHA,
    STATIC_INPUTS,
    calibration_batches,
    copy_configs,
)
from gist_onnx.export.check import cosines, reference_vectors  # noqa: E402
from gist_onnx.export.graph import export_pooled, fuse, record_pooling  # noqa: E402
from gist_onnx.export.quantize import (  # noqa: E402
    Bounds,
    activation_bounds,
    fold_attention_biases,
    peaks,
)
from gist_onnx.export.rowwise import quantize_rowwise  # noqa: E402
from gist_onnx.export.texts import CJK_PARAGRAPHS, PARITY_TEXTS  # noqa: E402
from gist_onnx.model import read_config  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from common import machine_record, results_dir, stand_in  # noqa: E402


def recipes(
    raw: Path,
    fused: Path,
    ranges: dict[str, np.ndarray],
    folded: Path,
    folded_bounds: Bounds,
) -> dict[str, Callable[[Path], Any]]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def dynamic(src: Path) -> Callable[[Path], Any]:
        return lambda out: quantize_dynamic(
            str(src),
            str(out),
            per_channel=True,
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )

    def rowwise(alpha: float | None, exclude: tuple[str, ...] = ()) -> Callable[[Path], Any]:
        return lambda out: quantize_rowwise(
            raw,
            out,
            ranges=None if alpha is None else ranges,
            alpha=alpha or 0.0,
            exclude=exclude,
        )

    folded_ranges = peaks(folded_bounds)

    def kept_but(static: tuple[str, ...], signed_weights: bool = False) -> Callable[[Path], Any]:
        return lambda out: quantize_rowwise(
            folded,
            out,
            ranges=folded_ranges,
            alpha=SMOOTHING_ALPHA,
            outliers=OUTLIER_CHANNELS,
            static=static,
            bounds=folded_bounds,
            signed_weights=signed_weights,
        )

    qkv = ("self/query", "self/key", "self/value")
    ffn0 = "layer.0/output/dense/"
    ffn_down = next(iter(OUTLIER_CHANNELS))  # every layer's FFN down-projection
    return {
        "fp32 fused (reference)": lambda out: shutil.copy(fused, out),
        "quantize_dynamic, per-channel, fused graph": dynamic(fused),
        "quantize_dynamic, per-channel, plain graph": dynamic(raw),
        "per-row int8, no smoothing": rowwise(None),
        "per-row + SmoothQuant 0.5": rowwise(0.5),
        "per-row + SmoothQuant 0.65": rowwise(0.65),
        "per-row + SmoothQuant 0.8": rowwise(0.8),
        "per-row + SmoothQuant 0.65, Q/K/V in fp32": rowwise(0.65, qkv),
        f"per-row + SmoothQuant 0.65, {ffn0} in fp32": rowwise(0.65, (ffn0,)),
        "per-row + SmoothQuant 0.65, key/value biases folded, all int8": lambda out: (
            quantize_rowwise(folded, out, ranges=folded_ranges, alpha=0.65)
        ),
        f"same, {ffn0} in fp32": lambda out: quantize_rowwise(
            folded, out, ranges=folded_ranges, alpha=0.65, exclude=(ffn0,)
        ),
        "same, all int8: layer 0's FFN down-projection with its largest input channel in fp32, "
        "not smoothed": lambda out: quantize_rowwise(
            folded, out, ranges=folded_ranges, alpha=0.65, outliers={ffn0: 1}
        ),
        "same, two channels in every FFN down-projection": lambda out: quantize_rowwise(
            folded, out, ranges=folded_ranges, alpha=0.65, outliers={ffn_down: 2}
        ),
        "same, every FFN down-projection's largest input channel in fp32, not smoothed": (
            kept_but(())
        ),
        "same, static scales (calibrated bounds, 256 levels) on Q/K/V's inputs": kept_but(
            STATIC_INPUTS[:1]
        ),
        "same, static on the attention output projection's inputs too": kept_but(
            (*STATIC_INPUTS[:1], r"/attention/output/dense/")
        ),
        "**kept**: same, static on the inputs of Q/K/V and of the FFN up-projection (the layer "
        "norms' outputs)": kept_but(STATIC_INPUTS),
        "kept, but the weights stored as int8 (u8 x s8 products, as before; ONNX Runtime's kernel "
        "saturates on x86 without VNNI)": kept_but(STATIC_INPUTS, signed_weights=True),
        "same, static on the FFN down-projections' inputs (GELU outputs) too": kept_but(
            (*STATIC_INPUTS, ffn_down)
        ),
    }


# Texts unlike the calibration texts and the STS sentences: markup, code, numbers, other
# scripts, emoji, repetition. unusual_texts() adds strings of random word pieces.
ODD_TEXTS = (
    "",
    "a",
    "?",
    "!!!!!!!!!!!!!!!!!!!!!!!!",
    "http://example.com/a/b?c=d&e=f&g=%20h",
    "def f(x):\n    return x**2  # square it",
    "SELECT name, count(*) FROM users WHERE age > 30 GROUP BY name;",
    '<html><body><div class="a">Hello</div></body></html>',
    '{"key": [1, 2, 3], "nested": {"a": null}}',
    "#hashtag @mention $TSLA %50 ^^ && || ~~",
    "1234567890 3.14159 2.71828 6.022e23",
    "SHOUTING IN ALL CAPS RIGHT NOW!!!",
    "\U0001f600\U0001f600\U0001f600 emoji test \U0001f389\U0001f389",
    "Ünïcödé àccents çà et là, naïve café",
    "Привет, как дела? Это русский текст о погоде в Москве.",  # noqa: RUF001
    "مرحبا كيف حالك اليوم؟ هذا نص عربي",
    "यह एक हिंदी वाक्य है जो मौसम के बारे में है।",
    "Ελληνικά κείμενα για δοκιμή",  # noqa: RUF001
    "q: what is 2+2? a: 4",
    "\t\n\r  whitespace  \n\n",
    " ".join(["the"] * 200),
    "x" * 500,
    "A" * 1000,
    "aaaa bbbb cccc dddd " * 40,
    ". . . . . . . . . ." * 20,
    "lorem ipsum dolor sit amet, consectetur adipiscing elit " * 20,
    "The quick brown fox jumps over the lazy dog. " * 30,
)


def unusual_texts(model: Path, count: int = 100) -> list[str]:
    """ODD_TEXTS, then ``count`` strings of 3 to 300 random word pieces (seeded)."""
    vocab = [
        w.removeprefix("##")
        for w in (model / "vocab.txt").read_text(encoding="utf-8").splitlines()
        if w and not w.startswith("[")
    ]
    rng = np.random.default_rng(0)
    lengths = rng.choice([3, 10, 40, 150, 300], size=count)
    return list(ODD_TEXTS) + [" ".join(rng.choice(vocab, size=int(n))) for n in lengths]


def measure(
    folder: Path,
    texts: list[str],
    reference: np.ndarray,
    cjk: np.ndarray,
    unusual: tuple[list[str], np.ndarray],
    *,
    repeats: int,
) -> dict[str, Any]:
    enc = GistEncoder(folder, variant="int8", threads=2)
    cos = cosines(enc.encode(texts), reference)
    cjk_cos = cosines(enc.encode(list(CJK_PARAGRAPHS)), cjk)
    odd_cos = cosines(enc.encode(unusual[0]), unusual[1])
    check = list(PARITY_TEXTS)
    whole = enc.encode(check, batch_size=len(check))
    singles = np.stack([enc.encode_one(t) for t in check])
    sentences = texts[len(check) :][:1024]
    enc.encode(sentences[:64])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        enc.encode(sentences, batch_size=32)
        times.append(time.perf_counter() - start)
    return {
        "worst_cosine": float(cos.min()),
        "cjk_worst_cosine": float(cjk_cos.min()),
        "unusual_worst_cosine": float(odd_cos.min()),
        "unusual_mean_cosine": float(odd_cos.mean()),
        "mean_cosine": float(cos.mean()),
        "batch_dependence": float(cosines(whole, singles).min()),
        "sentences_per_s": len(sentences) / float(np.median(times)),
        "megabytes": (folder / "model_int8.onnx").stat().st_size / 1e6,
    }


def _cpu() -> str:
    """The CPU, with the flags that decide how int8 products run (VNNI, AMX)."""
    m = machine_record()
    return f"{m['cpu']} ({m['family']}: {' '.join(str(f) for f in m['flags'])})"  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: stand-in)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--only", default=None, help="run only the recipes whose name holds this text"
    )
    parser.add_argument(
        "--output",
        default="INT8.md",
        help="report name in this CPU's results folder, benchmarks/results/<family>/ (json beside)",
    )
    args = parser.parse_args()
    model = args.model or stand_in()
    texts = list(PARITY_TEXTS) + load_sts("stsb").sentences
    reference = reference_vectors(model, texts)
    cjk = reference_vectors(model, list(CJK_PARAGRAPHS))
    odd = unusual_texts(model)
    unusual = (odd, reference_vectors(model, odd))
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = work / "model"
        folder.mkdir()
        copy_configs(model, folder)
        config = read_config(folder)
        raw, fused = work / "raw.onnx", work / "fused.onnx"
        export_pooled(model, raw, pooling=config.pooling, normalize=config.normalize)
        fuse(raw, fused, num_heads=12, hidden_size=384)
        shutil.copy(fused, folder / "model.onnx")
        batches = calibration_batches(folder, config)
        ranges = peaks(activation_bounds(raw, batches))
        folded = work / "folded.onnx"
        fold_attention_biases(raw, folded)
        folded_bounds = activation_bounds(folded, batches)
        for name, make in recipes(raw, fused, ranges, folded, folded_bounds).items():
            if args.only is not None and args.only not in name:
                continue
            make(folder / "model_int8.onnx")
            record_pooling(
                folder / "model_int8.onnx", pooling=config.pooling, normalize=config.normalize
            )
            results[name] = measure(folder, texts, reference, cjk, unusual, repeats=args.repeats)
            r = results[name]
            print(
                f"{name}: worst {r['worst_cosine']:.4f} mean {r['mean_cosine']:.5f} "
                f"cjk {r['cjk_worst_cosine']:.4f} "
                f"unusual {r['unusual_worst_cosine']:.4f}/{r['unusual_mean_cosine']:.5f} "
                f"batch {r['batch_dependence']:.5f} {r['sentences_per_s']:.0f}/s "
                f"{r['megabytes']:.1f} MB",
                flush=True,
            )
    lines = [
        "# int8 recipes, side by side",
        "",
        f"Written by `python benchmarks/studies/int8_recipes.py --repeats {args.repeats}"
        f"{'' if args.only is None else f' --only {args.only!r} --output {args.output}'}` "
        f"on {_cpu()}, "
        f"{len(texts)} texts (43 check texts + "
        "STS-B sentences), stand-in weights. Cosine is to sentence-transformers (torch fp32); "
        "CJK is the worst over three Chinese, Japanese and Korean paragraphs (scripts the "
        "calibration texts do not cover); unusual is the worst and mean over "
        f"{len(unusual[0])} texts unlike the others (markup, code, numbers, other scripts, emoji, "
        "repetition, and strings of random word pieces up to 256 tokens); batch dependence is "
        "the worst cosine between "
        "one-batch and one-at-a-time vectors; "
        "sentences/s is 1,024 STS-B sentences at batch 32 through gist-onnx on 2 threads, "
        "median of the repeats (compare rows within this run only).",
        "",
        "| recipe | worst cos | mean cos | CJK worst | unusual worst | unusual mean | "
        "batch dependence | sentences/s | MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['worst_cosine']:.4f} | {r['mean_cosine']:.5f} | "
            f"{r['cjk_worst_cosine']:.4f} | {r['unusual_worst_cosine']:.4f} | "
            f"{r['unusual_mean_cosine']:.5f} | {r['batch_dependence']:.5f} | "
            f"{r['sentences_per_s']:.0f} | {r['megabytes']:.1f} |"
        )
    out = results_dir()
    report = out / args.output
    data = out / ("int8_recipes.json" if args.output == "INT8.md" else f"{report.stem}.json")
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    data.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
