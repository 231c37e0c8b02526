"""Unit tier: the ``gist-onnx`` command and the progress bar."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gist_onnx import GistEncoder
from gist_onnx import session as session_mod
from gist_onnx.cli import main
from tests.support.tiny import write_tiny_model


def test_info_lists_providers_and_loads_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", "--model", str(write_tiny_model(tmp_path / "m"))]) == 0
    out = capsys.readouterr().out
    assert "CPUExecutionProvider" in out
    assert "GistEncoder(" in out
    # The CPU it read and the int8 form it takes there, and the loaded encoder's profile.
    from gist_onnx.device import choose_int8_form, cpu_info

    assert f"cpu: {cpu_info().describe()}" in out
    assert f"int8 products: {choose_int8_form(cpu_info()).form} (" in out
    assert "  tokens_per_run: 256" in out and "  threads: " in out


def test_info_reports_the_runtime_clash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        session_mod, "installed_runtimes", lambda: ["onnxruntime", "onnxruntime-gpu"]
    )
    assert main(["info"]) == 1
    assert session_mod.GPU_FIX in capsys.readouterr().out


def test_a_bad_model_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", "--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Model folder") and err.count("\n") == 1


def test_progress_bar_counts_every_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enc = GistEncoder(write_tiny_model(tmp_path / "m"))
    enc.encode(["hello"] * 5, batch_size=2, show_progress_bar=True)
    assert "5/5" in capsys.readouterr().err


def test_serve_refuses_an_api_key_no_request_could_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = str(write_tiny_model(tmp_path / "m"))
    assert main(["serve", "--model", model, "--api-key", "sk test"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "' ' at character 3" in err
    monkeypatch.setenv("GIST_ONNX_API_KEY", " \t\n")
    assert main(["serve", "--model", model]) == 2
    assert "GIST_ONNX_API_KEY is set but holds only whitespace" in capsys.readouterr().err


def test_an_api_key_keeps_no_whitespace_around_it() -> None:
    from gist_onnx import options

    assert options.checked_api_key("sk-test\n", "x") == "sk-test"
    assert options.checked_api_key(None, "x") is None


def test_serve_ends_its_start_up_on_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a container's PID 1 a process has no default action for SIGTERM: serve installs its
    own before it loads the model, so a stop during start-up ends it (exit 143)."""
    import signal

    from gist_onnx import serve as serve_mod
    from gist_onnx.interrupt import SIGTERM_STATUS

    seen: list[object] = []

    def loading(*args: object, **kwargs: object) -> None:
        handler = signal.getsignal(signal.SIGTERM)
        seen.append(handler)
        if callable(handler):  # (with the default action the signal would end pytest itself)
            signal.raise_signal(signal.SIGTERM)  # a stop while the model loads

    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(serve_mod, "serve", loading)
    try:
        with pytest.raises(SystemExit) as stopped:
            main(["serve", "--model", str(write_tiny_model(tmp_path / "m"))])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == SIGTERM_STATUS and seen and seen[0] is not signal.SIG_DFL


def test_serve_flags_are_generated_from_serve_config() -> None:
    """Every ServeConfig and Limits field with a flag is an option of ``gist-onnx serve``, and
    the flags parse into the config they name."""
    import dataclasses

    from gist_onnx.cli import build_parser
    from gist_onnx.serve.config import ServeConfig
    from gist_onnx.wire import Limits

    parser = build_parser()
    argv = ["serve", "--model", "m", "--max-queue", "5", "--quiet", "--no-warm-up"]
    config = ServeConfig.from_args(parser.parse_args([*argv, "--served-model-name", "a"]))
    expected = ServeConfig(
        model="m",
        limits=Limits(max_queue_texts=5),
        access_log=False,
        warm_up=None,
        served_model_names=("a",),
    )
    assert config == expected
    assert ServeConfig.from_args(parser.parse_args(["serve", "--model", "m"])).warm_up == (
        16,
        32,
        64,
        128,
        256,
    )
    fields = [*dataclasses.fields(ServeConfig), *dataclasses.fields(Limits)]
    flags = {f.metadata["flags"][0] for f in fields if "flags" in f.metadata}
    usage = parser.format_help()  # the subcommand's options are in its own help
    serve_help = subprocess.run(
        [sys.executable, "-m", "gist_onnx.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "serve" in usage and len(flags) >= 25
    assert [f for f in flags if f not in serve_help] == []
