"""``gist-onnx bundle``: an export folder to zips that AWS Lambda takes as they are.

    gist-onnx bundle --model gist-onnx-model --variant int8 --output dist/lambda \\
        [--arch x86_64|aarch64] [--python 3.12] [--glibc 2.34] [--layout auto|single|split]

What it does, in order:

1. loads the model folder with :class:`GistEncoder` (its files checked against the manifest) and
   encodes a text: a folder that fails here is refused before anything is built;
2. installs the runtime (onnxruntime, numpy, tokenizers; not huggingface-hub: the model ships in
   the bundle) for the *target* platform and Python with ``pip install --platform ...
   --only-binary=:all: --python-version ... --target``, so an arm64 bundle builds on x86_64;
3. copies the ``gist_onnx`` package (without its export tool) and removes what the runtime never
   imports (:data:`.packages.PRUNED`, each with its reason; shared libraries are not
   ``strip``-ped: that breaks numpy's bundled OpenBLAS);
4. compiles ``.pyc`` files for the target Python (unchecked-hash, so no write is ever needed at
   run time: Lambda's code folders are read-only and a module without its ``.pyc`` would be
   compiled again at every cold start);
5. copies only the chosen graph (for int8, both its forms: Lambda may run it on a CPU with or
   without VNNI), its weights, the tokenizer, the sentence-transformers configs and the
   manifest, every file readable by all;
6. writes ``function.zip`` (runtime + model) if it fits Lambda's 50 MB direct-upload limit,
   else ``layer.zip`` (the runtime, under ``python/``) and ``function.zip`` (the model), and checks
   the 250 MB limit on everything unzipped;
7. where the target runs on this machine, unzips the result and invokes the handler in a bare
   interpreter (only the bundle on ``sys.path``).

Lambda's Python runtimes: 3.12 and later run on Amazon Linux 2023 (glibc 2.34); 3.10 and 3.11 on
Amazon Linux 2 (glibc 2.26), for which onnxruntime publishes no current wheel. ``--glibc`` builds
for another Linux (a container image, another platform).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import GistEncoder, ModelFilesError, __version__, options
from . import packages
from .packages import DEFAULT_PYTHON, BundleError, Target

__all__ = ["BundleError", "BundleReport", "Part", "Target", "build"]

HANDLER = "gist_onnx.serverless.handler"
ZIP_LIMIT_BYTES = 50 * 1000 * 1000  # Lambda's direct upload limit (layers too), 50 MB
UNZIPPED_LIMIT_BYTES = 250 * 1000 * 1000  # function and all its layers, unzipped: 250 MB
LAYOUTS = ("auto", "single", "split")
MODEL_DIR = "model"


@dataclass
class Part:
    """One zip of the bundle."""

    name: str
    path: str
    zipped_bytes: int
    unzipped_bytes: int
    files: int


@dataclass
class BundleReport:
    """What was built, with its sizes against Lambda's limits; also written as bundle.json."""

    variant: str
    target: dict[str, str]
    layout: str
    handler: str
    parts: list[Part]
    packages: dict[str, str]
    pruned_bytes: dict[str, int]
    compiled: str
    checked_here: str
    build_seconds: float
    limits: dict[str, int] = field(
        default_factory=lambda: {
            "zip_bytes": ZIP_LIMIT_BYTES,
            "unzipped_bytes": UNZIPPED_LIMIT_BYTES,
        }
    )

    @property
    def unzipped_bytes(self) -> int:
        """Everything the function and its layer take once unzipped."""
        return sum(p.unzipped_bytes for p in self.parts)

    def summary(self) -> str:
        """The sizes against the limits, the handler and how to deploy, for people."""
        mb = 1e6
        lines = [
            f"gist-onnx bundle: {self.variant} model, Python {self.target['python']}, "
            f"{self.target['arch']} (glibc {self.target['glibc']}), layout: {self.layout}",
        ]
        for part in self.parts:
            ok = "ok" if part.zipped_bytes <= ZIP_LIMIT_BYTES else "OVER"
            lines.append(
                f"  {part.path}: {part.zipped_bytes / mb:.1f} MB zipped (limit 50 MB: {ok}), "
                f"{part.unzipped_bytes / mb:.1f} MB unzipped, {part.files} files"
            )
        ok = "ok" if self.unzipped_bytes <= UNZIPPED_LIMIT_BYTES else "OVER"
        lines.append(f"  unzipped in all: {self.unzipped_bytes / mb:.1f} MB (limit 250 MB: {ok})")
        for part in self.parts:
            if part.zipped_bytes > ZIP_LIMIT_BYTES:
                lines.append(
                    f"  {part.path} is over the 50 MB limit of a direct upload: upload it to S3 "
                    "first (the deploy lines below do); Lambda takes up to 250 MB unzipped that way"
                )
        lines.append(f"  packages: {', '.join(f'{k} {v}' for k, v in self.packages.items())}")
        lines.append(f"  .pyc: {self.compiled}")
        lines.append(f"  checked here: {self.checked_here}")
        lines.append(f"handler: {self.handler}")
        return "\n".join(lines)

    def deploy_commands(self, function_name: str = "gist-onnx") -> str:
        """The aws CLI lines that deploy this bundle, as a shell script: fill in the role (and
        the bucket, for a function zip past the direct-upload limit) on its first lines."""
        runtime = f"python{self.target['python']}"
        arch = "arm64" if self.target["arch"] == "aarch64" else "x86_64"
        lines = ['ROLE_ARN="arn:aws:iam::ACCOUNT_ID:role/LAMBDA_ROLE"  # your execution role']
        layers = ""
        function = next(p for p in self.parts if p.name == "function")
        code = f"--zip-file fileb://{function.path}"
        if function.zipped_bytes > ZIP_LIMIT_BYTES:
            key = f"{function_name}/function.zip"
            lines += [
                'BUCKET="your-bucket"  # an S3 bucket in the function\'s region',
                f'aws s3 cp {function.path} "s3://$BUCKET/{key}"',
            ]
            code = f'--code "S3Bucket=$BUCKET,S3Key={key}"'
        for layer in (p for p in self.parts if p.name == "layer"):
            lines.append(
                "LAYER_ARN=$(aws lambda publish-layer-version "
                f"--layer-name {function_name}-runtime --zip-file fileb://{layer.path} "
                f"--compatible-runtimes {runtime} "
                f"--compatible-architectures {arch} --query LayerVersionArn --output text)"
            )
            layers = ' --layers "$LAYER_ARN"'
        lines.append(
            f"aws lambda create-function --function-name {function_name} --runtime {runtime} "
            f"--architectures {arch} --handler {self.handler} --memory-size 1769 --timeout 30 "
            f'--role "$ROLE_ARN" {code}{layers}'
        )
        lines.append(
            f"aws lambda create-function-url-config --function-name {function_name} "
            "--auth-type AWS_IAM"
        )
        return "\n".join(lines)


def build(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    variant: str = "int8",
    arch: str = "x86_64",
    python: str = DEFAULT_PYTHON,
    glibc: str | None = None,
    layout: str = "auto",
    compile_with: str | None = None,
    pip_args: tuple[str, ...] = (),
    log: Callable[[str], None] = print,
) -> BundleReport:
    """Build a Lambda bundle of ``model`` into ``output``; see the module docstring."""
    started = time.perf_counter()
    target = packages.target(arch, python, glibc)
    if variant not in ("int8", "fp32"):
        raise BundleError(
            f"--variant {variant!r}: a bundle runs on Lambda's CPUs, so int8 (smallest, fastest "
            "there) or fp32. fp16 is for CUDA."
        )
    if layout not in LAYOUTS:
        raise BundleError(f"--layout {layout!r}: choose one of {', '.join(LAYOUTS)}.")
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise ModelFilesError(
            f"--model {folder} is not a folder; pass the folder `gist-onnx export` wrote."
        )
    encoder = GistEncoder(folder, variant=variant)  # integrity check, load, and one encode
    reference = encoder.encode(["gist-onnx bundle check"])[0]
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise BundleError(f"--output {out} exists and is not a folder.")

    with tempfile.TemporaryDirectory(prefix="gist-onnx-bundle-") as tmp:
        stage = Path(tmp)
        packages_dir, model_dir = stage / "packages", stage / MODEL_DIR
        log(f"installing the runtime for Python {target.python} on {target.arch} ...")
        versions = packages.install_runtime(packages_dir, target, pip_args)
        packages.copy_package(packages_dir / "gist_onnx")
        pruned = packages.prune(packages_dir)
        # An interpreter of the target's version, found once: it compiles and checks the bundle.
        interpreter = packages.find_python(target.python, compile_with)
        compiled = packages.compile_bytecode(packages_dir, target, interpreter)
        log(f"  .pyc: {compiled}")
        _copy_model(folder, encoder, model_dir)

        out.mkdir(parents=True, exist_ok=True)
        for stale in ("function.zip", "layer.zip"):
            (out / stale).unlink(missing_ok=True)
        log("zipping ...")
        parts = _write_zips(packages_dir, model_dir, out, layout)
        chosen = "split" if any(p.name == "layer" for p in parts) else "single"
        checked = _check_here(parts, target, reference, variant, interpreter)

    report = BundleReport(
        variant=variant,
        target=asdict(target),
        layout=chosen,
        handler=HANDLER,
        parts=parts,
        packages=versions,
        pruned_bytes=pruned,
        compiled=compiled,
        checked_here=checked,
        build_seconds=round(time.perf_counter() - started, 1),
    )
    record = asdict(report) | {"unzipped_bytes": report.unzipped_bytes, "gist_onnx": __version__}
    (out / "bundle.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if report.unzipped_bytes > UNZIPPED_LIMIT_BYTES:
        raise BundleError(
            f"The bundle takes {report.unzipped_bytes / 1e6:.0f} MB unzipped, over Lambda's 250 MB "
            "limit; use a container image."
        )
    return report


def _copy_model(model: Path, encoder: GistEncoder, destination: Path) -> None:
    """Copy what the encoder reads, and nothing else, keeping the folder's layout: for int8,
    every form of the graph, since the function may land on a CPU that runs the other."""
    source = model.resolve()
    for path in encoder.files_to_ship:
        target = destination / path.resolve().relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _zip(path: Path, sources: list[tuple[Path, str]]) -> tuple[int, int]:
    """Write ``path`` from (folder, prefix) pairs; returns (unzipped bytes, file count)."""
    unzipped = files = 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for folder, prefix in sources:
            for item in _files(folder):
                name = prefix + item.relative_to(folder).as_posix()
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = 0o100644 << 16  # readable by the function's user
                info.compress_type = zipfile.ZIP_DEFLATED
                with item.open("rb") as handle:
                    archive.writestr(info, handle.read(), compresslevel=6)
                unzipped += item.stat().st_size
                files += 1
    return unzipped, files


def _write_zips(packages: Path, model: Path, out: Path, layout: str) -> list[Part]:
    if layout in ("auto", "single"):
        path = out / "function.zip"
        unzipped, files = _zip(path, [(packages, ""), (model, f"{MODEL_DIR}/")])
        size = path.stat().st_size
        if size <= ZIP_LIMIT_BYTES or layout == "single":
            return [Part("function", str(path), size, unzipped, files)]
        path.unlink()
    parts = []
    for name, sources in (
        ("layer", [(packages, "python/")]),  # Lambda puts /opt/python on sys.path
        ("function", [(model, f"{MODEL_DIR}/")]),
    ):
        path = out / f"{name}.zip"
        unzipped, files = _zip(path, sources)
        parts.append(Part(name, str(path), path.stat().st_size, unzipped, files))
    return parts


SMOKE = """
import json, sys
sys.path[:0] = json.loads(sys.argv[1])
from gist_onnx.serverless import handler
body = handler({"input": ["gist-onnx bundle check"]}, None)
print(json.dumps({"vector": body["data"][0]["embedding"],
                  "hub": "huggingface_hub" in sys.modules}))
"""


def _check_here(
    parts: list[Part], target: Target, reference: Any, variant: str, python: str | None
) -> str:
    """Unzip the bundle as Lambda lays it out and invoke the handler in a bare interpreter of the
    target's Python (``python``: :func:`~gist_onnx.serverless.packages.find_python`'s)."""
    if not target.platform_runs_here:
        return (
            f"no: this machine cannot run {target.arch} wheels for glibc {target.glibc} "
            "(run the handler where it can: see the serverless docs)"
        )
    if python is None:
        return (
            f"no: no Python {target.python} found here to run it (pass --compile-with PATH, or "
            f"install Python {target.python}: pyenv and uv installs are found)"
        )
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="gist-onnx-bundle-check-") as tmp:
        task, opt = Path(tmp) / "task", Path(tmp) / "opt"
        for part in parts:
            with zipfile.ZipFile(part.path) as archive:
                archive.extractall(opt if part.name == "layer" else task)
        paths = [str(task), str(opt / "python")]
        env = {"PATH": os.environ.get("PATH", ""), "LAMBDA_TASK_ROOT": str(task)}
        env[options.VARIANT] = variant
        proc = subprocess.run(
            [python, "-I", "-S", "-c", SMOKE, json.dumps(paths)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if proc.returncode != 0:
        raise BundleError(f"The bundle does not run here: {proc.stderr.strip()[-600:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    vector = np.asarray(result["vector"], dtype=np.float32)
    if float(np.dot(vector, reference)) < 0.99999:
        raise BundleError("The bundle ran here but its vector differs from the model folder's.")
    return (
        f"yes: the handler ran from the unzipped bundle in a bare Python {target.python} "
        "(python -I -S)"
    )
