"""Build the peers' own ONNX files (run in the peers venv, see benchmarks/README.md).

sentence-transformers' ONNX backend exports through optimum and optimizes / quantizes with its own
helpers; this script runs exactly those, as a user following its efficiency guide would:
``onnx/model.onnx`` (plain export), ``onnx/model_O3.onnx`` and
``onnx/model_qint8_avx512_vnni.onnx``.
fastembed and optimum's ORTModelForFeatureExtraction load ``onnx/model.onnx`` from the same folder.

    peers/bin/python benchmarks/prepare_peers.py SOURCE_MODEL_DIR OUT_DIR
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def main(source: Path, out: Path) -> None:
    from sentence_transformers import (
        SentenceTransformer,
        export_dynamic_quantized_onnx_model,
        export_optimized_onnx_model,
    )

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(source, out)
    model = SentenceTransformer(str(out), backend="onnx", device="cpu")
    model.save_pretrained(str(out))
    export_optimized_onnx_model(model, "O3", str(out))
    export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(out))
    print(sorted(p.name for p in (out / "onnx").iterdir()))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
