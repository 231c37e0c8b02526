"""Model tier: the benchmark harness's offline path (`benchmarks/run.py --installed`), the one a
GPU machine with no package index runs: every stack with one Python as it is, no venvs, no pip,
no export."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        PIP_NO_INDEX="1",  # a pip step would fail instead of installing
        GIST_BENCH_WORK=str(tmp_path / "work"),  # not the checkout's benchmarks/.work
    )
    return subprocess.run(
        [sys.executable, str(RUN), "--quick", "--installed", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )


@pytest.mark.model
def test_installed_runs_the_stacks_with_this_python_and_reports(
    tmp_path: Path, exported: Path, stand_in_dir: Path
) -> None:
    report = tmp_path / "report.md"
    proc = _run(
        tmp_path,
        "--model",
        str(exported),
        "--source",
        str(stand_in_dir),
        "--stacks",
        "gist-int8,gist-fp16",  # fp16 needs CUDA: listed as not run, the run goes on
        "--output",
        str(report),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = report.read_text()
    assert "Run with `--installed`" in text
    row = next(line for line in text.splitlines() if line.startswith("| gist-onnx int8 |"))
    assert float(row.split("|")[3].split()[0].replace(",", "")) > 0  # sentences@32 texts/s
    assert "gist-onnx fp16 (fp16): NOT RUN: needs CUDA" in text
    assert "- gist-onnx int8 (int8): model_int8.onnx" in text  # no venv named
    assert "Versions: this Python " in text
    work = tmp_path / "work"
    assert (work / "workloads.json").is_file()
    assert sorted(p.name for p in work.iterdir()) == ["workloads.json"]  # no venv, no export


@pytest.mark.model
def test_installed_names_a_folder_without_a_graph(tmp_path: Path, stand_in_dir: Path) -> None:
    proc = _run(tmp_path, "--model", str(tmp_path), "--source", str(stand_in_dir))
    assert proc.returncode != 0
    assert f"no model*.onnx in {tmp_path}" in proc.stderr
