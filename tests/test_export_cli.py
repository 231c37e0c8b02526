"""The export script: its help, its manifest, and that its parity gate can fail."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXPORT_DIR

SCRIPT = str(EXPORT_DIR / "to_onnx.py")


def test_help_documents_every_option() -> None:
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--help"], capture_output=True, text=True, check=True
    )
    for option in ("--model", "--revision", "--output", "--quantize", "--fp16", "--device"):
        assert option in proc.stdout


def test_bad_model_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            "--model",
            str(tmp_path / "nope" / "x" / "y"),
            "--output",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --model")
    assert "Traceback" not in proc.stderr


@pytest.mark.model
def test_manifest_records_source_hashes_versions_and_figures(
    exported: Path, stand_in_dir: Path
) -> None:
    manifest = json.loads((exported / "gist_onnx_manifest.json").read_text())
    assert manifest["passed"] is True
    assert manifest["source"]["model"] == str(stand_in_dir.resolve())
    assert manifest["opset"] == 17
    assert manifest["config"] == {
        "max_seq_length": 256,
        "pooling": "mean",
        "normalize": True,
        "dimension": 384,
    }
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((exported / name).read_bytes()).hexdigest() == digest
    assert {
        "model.onnx",
        "model_int8.onnx",
        "model_fp16.onnx",
        "model.onnx.data",
        "model_int8.onnx.data",
        "model_fp16.onnx.data",
        "tokenizer.json",
        "1_Pooling/config.json",
    } <= set(manifest["files"])
    fp32, int8 = manifest["graphs"]["fp32"], manifest["graphs"]["int8"]
    assert fp32["fused_operators"]["Attention"] == 6
    assert fp32["check"]["worst_cosine"] >= 0.99999
    assert int8["check"]["worst_cosine"] >= 0.99 and int8["check"]["mean_cosine"] >= 0.998
    fp16 = manifest["graphs"]["fp16"]
    assert (
        fp16["check"]["provider"] == "CPUExecutionProvider"
        and "fp32 arithmetic" in fp16["check_note"]
    )
    assert fp16["check"]["worst_cosine"] >= 0.999
    for package in ("torch", "transformers", "onnxruntime", "sentence-transformers"):
        assert manifest["versions"][package] != "not installed"


@pytest.mark.parity
def test_a_graph_that_misses_its_threshold_fails_the_export(
    stand_in_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gist_onnx.export import check, to_onnx

    impossible = dict(check.THRESHOLDS["fp32"], worst_cosine=1.5)
    monkeypatch.setitem(check.THRESHOLDS, "fp32", impossible)
    code = to_onnx.main(["--model", str(stand_in_dir), "--output", str(tmp_path / "out")])
    assert code == 1
    assert "fp32 missed the parity thresholds" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "out" / "gist_onnx_manifest.json").read_text())
    assert manifest["passed"] is False


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "gist_onnx.cli", "export", "--help"],
        [sys.executable, "-m", "gist_onnx.export", "--help"],
    ],
)
def test_the_export_runs_from_the_package(command: list[str]) -> None:
    proc = subprocess.run(command, capture_output=True, text=True, check=True)
    assert proc.stdout.startswith("usage: gist-onnx export")
    assert "--quantize" in proc.stdout


def test_the_command_help_is_plain_text() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gist_onnx.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    assert "``" not in proc.stdout
    assert "export" in proc.stdout and "info" in proc.stdout
