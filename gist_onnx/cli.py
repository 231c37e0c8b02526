"""``gist-onnx``: the command line. ``gist-onnx info`` says what this install can run on.

User mistakes print one line and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import GistOnnxError


def _info(args: argparse.Namespace) -> int:
    import onnxruntime as ort

    from .session import GPU_FIX, installed_runtimes

    runtimes = installed_runtimes()
    print(f"gist-onnx {__version__}")
    print(f"onnxruntime {ort.__version__} from: {', '.join(runtimes) or 'unknown distribution'}")
    print(f"execution providers: {', '.join(ort.get_available_providers())}")
    if len(runtimes) > 1:
        print(f"problem: {' and '.join(runtimes)} overwrite each other. Fix: {GPU_FIX}")
        return 1
    if args.model is not None:
        from .encoder import GistEncoder

        encoder = GistEncoder(args.model, variant=args.variant, device=args.device)
        print(repr(encoder))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gist-onnx`` command."""
    parser = argparse.ArgumentParser(prog="gist-onnx", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"gist-onnx {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="versions, execution providers, install problems")
    info.add_argument("--model", default=None, help="also load this model folder or repo id")
    info.add_argument("--variant", default=None, help="fp32, int8 or fp16 (with --model)")
    info.add_argument("--device", default="cpu", help="cpu, cuda or auto (with --model)")
    args = parser.parse_args(argv)
    try:
        return _info(args)
    except GistOnnxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
