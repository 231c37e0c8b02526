"""Model tier: ``gist-onnx bundle`` builds zips Lambda takes, and the bundle runs as Lambda runs it.

These tests install the runtime's wheels for the target platform with pip (from the package
index, or pip's cache).
"""

from __future__ import annotations

import base64
import json
import os
import platform
import shutil
import stat
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gist_onnx import GistEncoder
from gist_onnx.cli import main
from gist_onnx.serverless.bundle import UNZIPPED_LIMIT_BYTES, ZIP_LIMIT_BYTES, build
from tests.support.unprivileged import run_as_nobody, shared_dir, skip_unless_possible

pytestmark = pytest.mark.model

HERE_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
HERE_GLIBC = platform.libc_ver()[1]
ELF_MACHINE = {"x86_64": 62, "aarch64": 183}

INVOKE = """
import json, sys
from gist_onnx.serverless import handler
url = handler(EVENT, None)
direct = handler({"input": ["hello world"], "encoding_format": "base64"}, None)
bad = handler({"input": [7]}, None)
print(json.dumps({
    "status": url["statusCode"],
    "body": json.loads(url["body"]),
    "direct": direct["data"][0]["embedding"],
    "bad": bad,
    "loaded": sorted(m for m in ("huggingface_hub", "torch", "transformers") if m in sys.modules),
}))
"""


def unzip_as_lambda(parts: list[Path], root: Path) -> tuple[Path, Path]:
    """Lay the zips out as Lambda does: the function in /var/task, layers in /opt."""
    task, opt = root / "task", root / "opt"
    for part in parts:
        with zipfile.ZipFile(part) as archive:
            archive.extractall(opt if part.name == "layer.zip" else task)
    for path in [root, *root.rglob("*")]:  # read-only for everyone but root
        path.chmod(0o555 if path.is_dir() else 0o444)
    return task, opt


def snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


def test_int8_bundle_runs_read_only_as_an_unprivileged_user(exported: Path) -> None:
    skip_unless_possible()
    out = shared_dir()
    try:
        # The bundle for this machine's Python and glibc, so that it can run here.
        report = build(exported, out / "dist", variant="int8", python=HERE_PYTHON, glibc=HERE_GLIBC)
        assert report.checked_here.startswith("yes")
        assert all(p.zipped_bytes <= ZIP_LIMIT_BYTES for p in report.parts)
        assert report.unzipped_bytes <= UNZIPPED_LIMIT_BYTES
        assert not {"huggingface_hub", "huggingface-hub"} & set(report.packages)
        assert report.compiled.startswith("compiled with")

        task, opt = unzip_as_lambda([Path(p.path) for p in report.parts], out / "lambda")
        before = snapshot(out / "lambda")
        event = json.loads((Path(__file__).parent / "events" / "function_url.json").read_text())
        texts = ["What is the capital of France?", "Paris is the capital of France."]
        event["body"] = json.dumps({"input": texts})
        proc = run_as_nobody(
            INVOKE.replace("EVENT", repr(event)),
            [task, opt / "python"],
            env={"LAMBDA_TASK_ROOT": str(task)},
        )
        assert proc.returncode == 0, proc.stderr
        # No write attempted outside the bundle either: ONNX Runtime's telemetry store is off.
        assert "telemetry" not in proc.stderr, proc.stderr
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        encoder = GistEncoder(exported, variant="int8")
        assert result["status"] == 200
        got = [d["embedding"] for d in result["body"]["data"]]
        np.testing.assert_allclose(got, encoder.encode(texts), atol=1e-6)
        direct = np.frombuffer(base64.b64decode(result["direct"]), dtype="<f4")
        np.testing.assert_allclose(direct, encoder.encode(["hello world"])[0], atol=1e-6)
        assert result["bad"]["status"] == 400
        assert result["loaded"] == []  # no hub client, no torch
        assert snapshot(out / "lambda") == before, "the bundle wrote into its own folders"
    finally:
        for path in [out, *out.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IRWXU)
        shutil.rmtree(out)


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_lambda_bundles_for_each_architecture(exported: Path, tmp_path: Path, arch: str) -> None:
    report = build(exported, tmp_path / arch, variant="int8", arch=arch, python="3.12")
    assert report.target == {"python": "3.12", "arch": arch, "glibc": "2.34"}
    assert report.layout in ("single", "split")
    # Checked here whenever this machine can run it: a Python 3.12 found beside this venv's.
    from gist_onnx.serverless.packages import find_python

    if arch != platform.machine():
        assert report.checked_here.startswith(f"no: this machine cannot run {arch}")
    elif find_python("3.12") is None:
        assert report.checked_here.startswith("no: no Python 3.12 found")
    else:
        assert report.checked_here.startswith("yes"), report.checked_here
    for part in report.parts:
        assert part.zipped_bytes <= ZIP_LIMIT_BYTES, f"{part.path}: {part.zipped_bytes}"
    assert report.unzipped_bytes <= UNZIPPED_LIMIT_BYTES

    names: list[str] = []
    for part in report.parts:
        with zipfile.ZipFile(part.path) as archive:
            names += archive.namelist()
            for info in archive.infolist():
                assert (info.external_attr >> 16) & 0o444 == 0o444, info.filename
            prefix = "python/" if part.name == "layer" else ""
            pybind = [
                n
                for n in archive.namelist()
                if n.startswith(f"{prefix}onnxruntime/capi/onnxruntime_pybind11_state")
            ]
            if pybind:
                header = archive.read(pybind[0])[:20]
                assert header[:4] == b"\x7fELF"
                assert int.from_bytes(header[18:20], "little") == ELF_MACHINE[arch]
    joined = "\n".join(names)
    assert "gist_onnx/serverless/function.py" in joined
    for pruned in (
        "libonnxruntime.so",
        "onnxruntime/transformers/",
        "gist_onnx/export/",
        "/tests/",
    ):
        assert pruned not in joined, pruned
    model = sorted(n.split("model/", 1)[1] for n in names if n.startswith("model/"))
    assert model == [
        "1_Pooling/config.json",
        "config.json",
        "config_sentence_transformers.json",  # the model's prompts
        "gist_onnx_manifest.json",
        "model_int8.onnx",
        "model_int8.onnx.data",
        # the u8 x s8 form: the function may land on a CPU with VNNI or AMX, or on arm64
        "model_int8_u8s8.onnx",
        "model_int8_u8s8.onnx.data",
        "modules.json",
        "sentence_bert_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    saved = json.loads((tmp_path / arch / "bundle.json").read_text())
    assert saved["handler"] == "gist_onnx.serverless.handler"


def test_a_corrupted_folder_is_refused_before_anything_is_built(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(exported, folder)
    data = folder / "model_int8.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[1000] ^= 1
    data.write_bytes(bytes(raw))
    code = main(["bundle", "--model", str(folder), "--output", str(tmp_path / "dist")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model_int8.onnx.data" in err
    assert not (tmp_path / "dist").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "sparc"], "--arch 'sparc'"),
        (["--variant", "fp16"], "fp16 is for CUDA"),
        (["--python", "2.7"], "--python '2.7'"),
        (["--python", "3.9"], "no python3.9 runtime"),
        (["--layout", "zigzag"], "--layout 'zigzag'"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(
    exported: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    code = main(["bundle", "--model", str(exported), "--output", str(tmp_path / "d"), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_python_3_11_on_lambda_says_why_it_cannot_be(exported: Path, tmp_path: Path) -> None:
    from gist_onnx.serverless.bundle import BundleError

    with pytest.raises(BundleError, match=r"Amazon Linux 2 \(glibc 2.26\).*--python 3.12"):
        build(exported, tmp_path / "d", python="3.11")


def test_no_model_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bundle", "--model", str(tmp_path / "nope"), "--output", str(tmp_path / "d")])
    assert code == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("function_bytes", [20_000_000, 90_000_000])
def test_the_printed_deploy_lines_are_a_shell_script(function_bytes: int) -> None:
    """What `gist-onnx bundle` prints to deploy parses as shell (no <placeholder> a pasted line
    would choke on); the role, and the bucket for a zip past 50 MB, are variables set first."""
    import subprocess

    from gist_onnx.serverless.bundle import BundleReport, Part

    report = BundleReport(
        variant="int8",
        target={"python": "3.12", "arch": "x86_64", "glibc": "2.34"},
        layout="split",
        handler="gist_onnx.serverless.handler",
        parts=[
            Part("layer", "dist/layer.zip", 30_000_000, 110_000_000, 900),
            Part("function", "dist/function.zip", function_bytes, function_bytes, 9),
        ],
        packages={},
        pruned_bytes={},
        compiled="",
        checked_here="",
        build_seconds=1.0,
    )
    script = report.deploy_commands()
    assert "<" not in script and 'ROLE_ARN="' in script.splitlines()[0]
    assert ("BUCKET=" in script) == (function_bytes > 50_000_000)
    proc = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_an_interpreter_of_the_target_version_is_found_where_users_install_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--compile-with first, then PATH, then pyenv's and uv's folders under the home folder;
    one that answers as another version (a pyenv shim for a version not selected) is passed
    over."""
    from gist_onnx.serverless.packages import find_python

    def fake(path: Path, version: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\necho {version}\n")
        path.chmod(0o755)
        return path

    shim = fake(tmp_path / "shims" / "python3.99", "3.11")  # a shim that runs another version
    pyenv = fake(
        tmp_path / "home" / ".pyenv" / "versions" / "3.99.2" / "bin" / "python3.99", "3.99"
    )
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", f"{shim.parent}{os.pathsep}{os.environ['PATH']}")
    assert find_python("3.99") == str(pyenv)
    given = fake(tmp_path / "mine" / "python", "3.99")
    assert find_python("3.99", str(given)) == str(given)
    assert find_python("3.98") is None
    uv = tmp_path / "home" / ".local" / "share" / "uv" / "python" / "cpython-3.98.1-linux"
    assert find_python("3.98") is None
    fake(uv / "bin" / "python3.98", "3.98")
    assert find_python("3.98") == str(uv / "bin" / "python3.98")
