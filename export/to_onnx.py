"""``python export/to_onnx.py``, kept for clones: the export tool is ``gist-onnx export``.

    python export/to_onnx.py --output gist-onnx-model --quantize

It lives in the package (``gist_onnx/export``) so that ``pip install 'gist-onnx[export]'`` brings
it; this script runs it from a checkout, installed or not.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gist_onnx.export.to_onnx import main

if __name__ == "__main__":
    sys.exit(main())
