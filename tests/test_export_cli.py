"""The export script: its help, its manifest, and that its parity gate can fail."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = str(Path(__file__).resolve().parent.parent / "export" / "to_onnx.py")


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
    # A local source is named, not located: the manifest ships, the exporting machine's paths
    # must not (nowhere in the file).
    assert manifest["source"] == {"model": None, "folder": stand_in_dir.name, "revision": None}
    assert str(stand_in_dir.parent) not in (exported / "gist_onnx_manifest.json").read_text()
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


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parity
def test_a_graph_that_misses_its_threshold_leaves_the_earlier_export(
    exported: Path,
    stand_in_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gist_onnx.export import check, to_onnx

    out = tmp_path / "out"
    shutil.copytree(exported, out)
    before = _tree(out)
    impossible = dict(check.THRESHOLDS["fp32"], worst_cosine=1.5)
    monkeypatch.setitem(check.THRESHOLDS, "fp32", impossible)
    code = to_onnx.main(["--model", str(stand_in_dir), "--output", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "fp32 missed the parity thresholds" in err and "was left as it was" in err
    assert _tree(out) == before
    manifest = json.loads((tmp_path / "out.failed" / "gist_onnx_manifest.json").read_text())
    assert manifest["passed"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "out.failed"]


@pytest.mark.model
def test_an_export_stopped_half_way_leaves_the_earlier_export(
    exported: Path, stand_in_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gist_onnx.export import to_onnx

    out = tmp_path / "out"
    shutil.copytree(exported, out)
    before = _tree(out)

    def stopped(args: object, output: Path, **kwargs: object) -> list[str]:
        (output / "model_int8.onnx").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(to_onnx, "write_export", stopped)
    with pytest.raises(KeyboardInterrupt):
        to_onnx.main(["--model", str(stand_in_dir), "--output", str(out), "--quantize"])
    assert _tree(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no partial folder left behind


@pytest.mark.model
def test_sigterm_removes_the_staging_folder_and_a_later_export_removes_stale_ones(
    stand_in_dir: Path, tmp_path: Path
) -> None:
    """What `timeout`, systemd and CI send: the export cleans up as on Ctrl-C. A staging folder
    a killed export left (its process gone) is removed by the next export; a running one's is
    left alone."""
    out = tmp_path / "out"
    dead = 4_000_000
    while Path(f"/proc/{dead}").exists():
        dead += 1
    stale = tmp_path / f".out.partial-{dead}-x1"
    stale_old = tmp_path / f".out.old-{dead}-swap"
    running = tmp_path / f".out.partial-{os.getpid()}-x2"
    for folder in (stale, stale_old, running):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half")
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, "--model", str(stand_in_dir), "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(f".out.partial-{proc.pid}-*")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1)  # into the work
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == [running.name]


@pytest.mark.model
@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("file", "is a file; pass a folder"),
        ("model", "holds the model being exported"),
        ("foreign", "holds files that are not a gist-onnx export"),
    ],
)
def test_output_mistakes_are_one_line_and_exit_2(
    stand_in_dir: Path, tmp_path: Path, make: str, message: str
) -> None:
    out = tmp_path / "out"
    if make == "file":
        out.write_text("x")
    elif make == "model":
        out = stand_in_dir
    else:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    proc = subprocess.run(
        [sys.executable, SCRIPT, "--model", str(stand_in_dir), "--output", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert message in proc.stderr


@pytest.mark.model
def test_an_unwritable_output_parent_is_one_line_and_exit_2(stand_in_dir: Path) -> None:
    from tests.support.unprivileged import (
        run_as_nobody,
        shared_dir,
        skip_unless_possible,
        venv_paths,
    )

    skip_unless_possible()
    locked = shared_dir()  # 0755, owned by root: nobody cannot write in it
    code = (
        "import sys; from gist_onnx.export.to_onnx import main; "
        f"sys.exit(main(['--model', {str(stand_in_dir)!r}, '--output', "
        f"{str(locked / 'sub' / 'out')!r}]))"
    )
    proc = run_as_nobody(code, venv_paths(), timeout=300)
    shutil.rmtree(locked)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: Cannot create") and "Traceback" not in proc.stderr


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


@pytest.mark.model
def test_int8_falls_back_to_per_row_scales_when_static_ones_miss_the_check(
    stand_in_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    import onnx

    from gist_onnx.export import check, to_onnx

    real = check.check_graph
    calls: list[str] = []

    def static_scales_miss(*args: object, **kwargs: object) -> check.GraphCheck:
        result = real(*args, **kwargs)  # type: ignore[arg-type]
        calls.append(result.variant)
        if result.variant == "int8" and calls.count("int8") == 1:
            return dataclasses.replace(result, passed=False)  # as on a model they do not suit
        return result

    monkeypatch.setattr(check, "check_graph", static_scales_miss)
    out = tmp_path / "out"
    assert to_onnx.main(["--model", str(stand_in_dir), "--output", str(out), "--quantize"]) == 0
    assert calls == ["int8", "fp32", "int8"]  # the first, then the final checks
    int8 = json.loads((out / "gist_onnx_manifest.json").read_text())["graphs"]["int8"]
    assert int8["note"].startswith("static scales dropped") and int8["check"]["worst_cosine"] > 0.99
    assert int8["quantized"]["static_activations"] == 0
    graph = onnx.load(str(out / "model_int8.onnx"), load_external_data=False).graph
    assert not [i.name for i in graph.initializer if i.name.endswith("/static_scale")]
    assert sum(n.op_type == "ReduceMax" for n in graph.node) == 24  # a row maximum per input


@pytest.mark.model
def test_a_folder_saved_by_sentence_transformers_6_exports_and_loads(
    stand_in_dir: Path, tmp_path: Path
) -> None:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from gist_onnx import GistEncoder
    from gist_onnx.export import to_onnx

    reference = SentenceTransformer(str(stand_in_dir), device="cpu")
    saved = tmp_path / "saved"
    reference.save(str(saved))  # its own layout: "pooling_mode": "mean", no max_seq_length
    pooling = json.loads((saved / "1_Pooling" / "config.json").read_text())
    if "pooling_mode" not in pooling:
        pytest.skip("this sentence-transformers still writes the older pooling keys")
    out = tmp_path / "out"
    assert to_onnx.main(["--model", str(saved), "--output", str(out)]) == 0
    texts = ["A man is playing a guitar.", "The weather is nice today."]
    got = GistEncoder(out).encode(texts)
    np.testing.assert_allclose(got, reference.encode(texts), atol=1e-5)
    assert GistEncoder(out).max_seq_length == 256


def test_an_output_that_is_a_link_is_written_where_it_points(tmp_path: Path) -> None:
    """``--output link`` (to an earlier export) replaces the folder the link names and keeps the
    link: swapping the link itself out failed on removing it."""
    from gist_onnx.export.to_onnx import check_output

    real = tmp_path / "exports" / "v1"
    real.mkdir(parents=True)
    (real / "gist_onnx_manifest.json").write_text("{}")
    link = tmp_path / "current"
    link.symlink_to(real, target_is_directory=True)
    source = tmp_path / "source"
    source.mkdir()
    assert check_output(link, source) == real.resolve()


def test_an_unreachable_hub_fails_in_seconds_naming_the_local_way(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_ENDPOINT": "http://127.0.0.1:9",  # nothing listens there
        "HF_HUB_CACHE": str(tmp_path / "cache"),
    }
    env.pop("HF_HUB_OFFLINE", None)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "gist_onnx.export", "--output", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "cannot be reached" in proc.stderr and "--model DIR" in proc.stderr
    assert time.monotonic() - started < 30
