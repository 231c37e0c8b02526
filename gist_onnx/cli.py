"""The ``gist-onnx`` command: argument parsing only, one function per subcommand, each handing
the work to the layer that does it.

User mistakes print one line (``error: ...``) and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import __version__, argtypes
from .errors import GistOnnxError
from .interrupt import exit_on_sigterm

DESCRIPTION = "GIST-all-MiniLM-L6-v2 sentence embeddings on ONNX Runtime, without torch."


def _info(args: argparse.Namespace) -> int:
    import onnxruntime as ort

    from .device import choose_int8_form, cpu_info
    from .session import GPU_FIX, installed_runtimes

    runtimes = installed_runtimes()
    print(f"gist-onnx {__version__}")
    print(f"onnxruntime {ort.__version__} from: {', '.join(runtimes) or 'unknown distribution'}")
    print(f"execution providers: {', '.join(ort.get_available_providers())}")
    cpu = cpu_info()
    form = choose_int8_form(cpu)
    print(f"cpu: {cpu.describe()}")
    print(f"int8 products: {form.form} ({form.reason})")
    if len(runtimes) > 1:
        print(f"problem: {' and '.join(runtimes)} overwrite each other. Fix: {GPU_FIX}")
        return 1
    if args.model is not None:
        from . import GistEncoder

        encoder = GistEncoder(args.model, variant=args.variant, device=args.device)
        print(repr(encoder))
        for key, value in encoder.describe().items():
            print(f"  {key}: {value}")
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from .serverless.bundle import build

    report = build(
        args.model,
        args.output,
        variant=args.variant,
        arch=args.arch,
        python=args.python,
        glibc=args.glibc,
        layout=args.layout,
        compile_with=args.compile_with,
        pip_args=tuple(args.pip_arg),
    )
    print(report.summary())
    print("deploy (fill in the role; see the README's 'Serverless' section):")
    print(report.deploy_commands())
    return 0


def _serve(args: argparse.Namespace) -> int:
    from . import options
    from .serve import serve
    from .serve.config import ServeConfig

    # Until the server installs its own handlers, SIGTERM ends the start-up: as a container's
    # PID 1 the process has no default action for it, and would go on to serve until killed.
    exit_on_sigterm()
    config = ServeConfig.from_args(args)
    serve(config=config.replace(api_key=config.api_key or options.api_key()))  # checked by serve()
    return 0


def _embed(args: argparse.Namespace) -> int:
    from . import GistEncoder
    from .embed import embed_file

    exit_on_sigterm()  # the partial output is removed on SIGTERM as on Ctrl-C

    # Without --model (None): GistEncoder's own default, the GIST model.
    encoder = GistEncoder(
        args.model, variant=args.variant, device=args.device, threads=args.threads
    )
    report = embed_file(
        encoder,
        args.input,
        args.output,
        input_format=args.input_format,
        output_format=args.output_format,
        key=args.field or args.column or "text",
        on_bad=args.on_bad,
        batch_size=args.batch_size,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    if report.skipped:
        shown = ", ".join(map(str, report.skipped[:20]))
        more = f" and {len(report.skipped) - 20} more" if len(report.skipped) > 20 else ""
        print(f"skipped {len(report.skipped)} bad rows: lines {shown}{more}", file=sys.stderr)
    if not args.quiet and args.output != "-":
        print(f"embedded {report.embedded} texts into {args.output}", file=sys.stderr)
    return 0


def _export(argv: list[str]) -> int:
    # The export has its own parser (and its own --help); it needs the export extra.
    from .export.to_onnx import main as export_main

    return export_main(argv)


_count, _port, _seconds = argtypes.count, argtypes.port, argtypes.seconds
_milliseconds, _non_negative = argtypes.milliseconds, argtypes.non_negative


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand but ``export``, which parses its own arguments."""
    parser = argparse.ArgumentParser(prog="gist-onnx", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"gist-onnx {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_info(commands)
    _add_bundle(commands)
    _add_embed(commands)
    _add_serve(commands)
    _add_verify(commands)
    return parser


def _add_verify(commands: Any) -> None:
    """``gist-onnx verify``: every file of an export against its manifest."""
    verify = commands.add_parser(
        "verify",
        help="check every file of an export folder against its manifest's sha256",
        description="Check every file the export's manifest lists (the web folder's too, which "
        "a page loads without any check) against its sha256; exit 2 on any difference.",
    )
    verify.add_argument("folder", help="the export folder")


def _verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .model.manifest import verify_folder

    matched, problems = verify_folder(Path(args.folder))
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(f"{matched} files match the manifest" + (f", {len(problems)} do not" if problems else ""))
    return 2 if problems else 0


def _add_info(commands: Any) -> None:
    """``gist-onnx info``: versions, providers, install problems."""
    info = commands.add_parser("info", help="versions, execution providers, install problems")
    info.add_argument("--model", default=None, help="also load this model folder or repo id")
    info.add_argument("--variant", default=None, help="fp32, int8 or fp16 (with --model)")
    info.add_argument("--device", default="cpu", help="cpu, cuda or auto (with --model)")


def _add_bundle(commands: Any) -> None:
    """``gist-onnx bundle``: the Lambda zips."""
    bundle = commands.add_parser(
        "bundle",
        help="zips of runtime + model that AWS Lambda takes as they are",
        description="Build an AWS Lambda bundle (handler gist_onnx.serverless.handler) from an "
        "export folder: the runtime installed for the target platform, pruned, with only the "
        "chosen graph. One function.zip when it fits 50 MB, else layer.zip + function.zip.",
    )
    bundle.add_argument("--model", required=True, help="the folder gist-onnx export wrote")
    bundle.add_argument("--output", required=True, help="folder for the zips and bundle.json")
    bundle.add_argument("--variant", default="int8", help="int8 (default) or fp32")
    bundle.add_argument(
        "--arch", "--platform", dest="arch", default="x86_64", help="x86_64 (default) or aarch64"
    )
    bundle.add_argument(
        "--python", default="3.12", help="the Lambda runtime's Python: 3.12 (default), 3.13, ..."
    )
    bundle.add_argument(
        "--glibc", default=None, help="target glibc, for a Linux other than Lambda's (e.g. 2.36)"
    )
    bundle.add_argument(
        "--layout", default="auto", help="auto (default: one zip if it fits), single or split"
    )
    bundle.add_argument(
        "--compile-with",
        default=None,
        help="a Python of the target version to compile .pyc with (default: found on PATH)",
    )
    bundle.add_argument(
        "--pip-arg",
        action="append",
        default=[],
        help="passed to pip, e.g. --pip-arg=--find-links=wheels/ (repeatable)",
    )


def _add_embed(commands: Any) -> None:
    """``gist-onnx embed``: a file of texts into a file of vectors."""
    embed = commands.add_parser(
        "embed",
        help="embed the texts of a file (txt, jsonl, csv, parquet) into a file (npy, parquet, "
        "jsonl)",
        description="Embed every text of INPUT into OUTPUT, streamed (memory stays bounded "
        "whatever the file's size). - reads stdin / writes jsonl to stdout.",
    )
    embed.add_argument("input", help="a .txt, .jsonl, .csv or .parquet file, or - for stdin")
    embed.add_argument(
        "-o", "--output", required=True, help="a .npy, .parquet or .jsonl file, or -"
    )
    embed.add_argument(
        "--model", default=None, help="model folder or hub repo id (default: the GIST model)"
    )
    embed.add_argument("--variant", default=None, help="fp32 (default), int8 or fp16")
    embed.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    embed.add_argument("--threads", type=_count, default=None, help="ONNX Runtime threads")
    embed.add_argument(
        "--batch-size",
        type=_count,
        default=None,
        help="texts per batch (32 on the CPU, 128 on CUDA)",
    )
    embed.add_argument("--field", default=None, help="jsonl: the field holding the text (text)")
    embed.add_argument("--column", default=None, help="csv/parquet: the column (text)")
    embed.add_argument("--input-format", default=None, help="txt, jsonl, csv or parquet")
    embed.add_argument("--output-format", default=None, help="npy, jsonl or parquet")
    embed.add_argument(
        "--on-bad", default="fail", help="a bad row: fail (default, naming its line) or skip"
    )
    embed.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def _add_serve(commands: Any) -> None:
    """``gist-onnx serve``: the HTTP server; its flags are ServeConfig's fields."""
    from .serve.config import ServeConfig

    serve = commands.add_parser(
        "serve",
        help="an OpenAI-compatible embeddings server (needs gist-onnx[server])",
        description="Serve POST /v1/embeddings (OpenAI's shape), /tokenize, /v1/models, /health "
        "and /metrics, batching concurrent requests into one graph run.",
    )
    ServeConfig.add_arguments(serve)
    commands.add_parser(
        "export",
        help="export a model to checked ONNX graphs (needs gist-onnx[export]; "
        "see gist-onnx export --help)",
        add_help=False,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gist-onnx`` command."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list[:1] == ["export"]:
        return _export(args_list[1:])
    args = build_parser().parse_args(args_list)
    try:
        handlers = {
            "bundle": _bundle,
            "serve": _serve,
            "embed": _embed,
            "info": _info,
            "verify": _verify,
        }
        return handlers[args.command](args)
    except GistOnnxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C: what the command does on it (serve drains, embed removes its partial output)
        # is done by now; the shell's convention for SIGINT, without a traceback.
        print(f"gist-onnx {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
