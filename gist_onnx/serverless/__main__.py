"""Invoke the Lambda handler here, as Lambda would, with one event:

    python -m gist_onnx.serverless --model gist-onnx-model --event event.json
    echo '{"input": ["a text"]}' | python -m gist_onnx.serverless --model gist-onnx-model

The event is a direct invocation (the request object itself) or an HTTP event (function URL,
API Gateway); what the handler returns is printed as JSON. ``--model`` sets ``GIST_ONNX_MODEL``
for this run (else the environment's, or the bundle's ``model/`` folder). Exit status 0 when the
handler answered 200, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .. import options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gist_onnx.serverless", description="Invoke the Lambda handler locally."
    )
    parser.add_argument("--event", default="-", help="a JSON event file (default: - for stdin)")
    parser.add_argument("--model", default=None, help="the model folder (sets GIST_ONNX_MODEL)")
    args = parser.parse_args(argv)
    if args.model is not None:
        os.environ[options.MODEL] = args.model
    try:
        if args.event == "-":
            event = json.load(sys.stdin)
        else:
            with open(args.event, encoding="utf-8") as handle:
                event = json.load(handle)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the event {args.event}: {exc}", file=sys.stderr)
        return 2
    from .function import handler

    result = handler(event, None)
    try:
        print(json.dumps(result), flush=True)
    except BrokenPipeError:  # piped into `head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    status = result.get("statusCode", result.get("status", 200))
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
