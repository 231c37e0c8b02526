"""``python -m gist_onnx.export``: the same as ``gist-onnx export``."""

from __future__ import annotations

import sys

from .to_onnx import main

sys.exit(main())
