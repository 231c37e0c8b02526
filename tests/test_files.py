"""Unit tier: reading the model folder, and finding graphs, with the errors users see."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gist_onnx.model as files_mod
from gist_onnx import GistEncoder, ModelConfigError, ModelFilesError
from gist_onnx.model import layout, read_config, resolve
from tests.support.tiny import write_manifest, write_tiny_model


def test_config_comes_from_the_folder(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "m", max_seq_length=512)
    config = read_config(folder)
    assert (config.max_seq_length, config.pooling, config.normalize, config.dimension) == (
        512,
        "mean",
        True,
        4,
    )


def test_stand_in_config(stand_in_dir: Path) -> None:
    config = read_config(stand_in_dir)
    assert (config.max_seq_length, config.pooling, config.normalize, config.dimension) == (
        256,
        "mean",
        True,
        384,
    )


def test_max_length_falls_back_like_sentence_transformers(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "m")
    (folder / "sentence_bert_config.json").unlink()
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 1000000000000}))
    (folder / "config.json").write_text(
        json.dumps({"hidden_size": 4, "max_position_embeddings": 128})
    )
    assert read_config(folder).max_seq_length == 128


def test_unsupported_pooling_is_named(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "m", pooling="pooling_mode_weightedmean_tokens")
    with pytest.raises(ModelConfigError, match="pooling_mode_weightedmean_tokens"):
        read_config(folder)


def test_missing_folder_and_graph_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesError, match="does not exist"):
        GistEncoder(tmp_path / "nowhere")
    folder = write_tiny_model(tmp_path / "m")
    with pytest.raises(ModelFilesError, match=r"No int8 graph .*model_int8\.onnx.*--quantize"):
        GistEncoder(folder, variant="int8")
    with pytest.raises(ModelConfigError, match="Unknown variant 'int4'"):
        GistEncoder(folder, variant="int4")


def test_onnx_subfolder_layout_is_found(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "m", graph_name="onnx/model.onnx")
    assert resolve(folder, "fp32").graph == folder / "onnx" / "model.onnx"


def test_a_path_that_is_not_a_repo_id_is_not_sent_to_the_hub(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesError, match="not a hub repo id"):
        resolve(str(tmp_path / "a" / "b" / "c"), "fp32")


def test_broken_json_is_reported_with_its_path(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "m")
    (folder / "modules.json").write_text("{not json")
    with pytest.raises(ModelConfigError, match=r"modules\.json"):
        read_config(folder)


@pytest.mark.parametrize(
    "name", ["./gist-model", "~/no-such-gist-model", "a/b/c", "artifact/demo-model", "/nope/m"]
)
def test_a_mistyped_folder_fails_at_once_without_the_hub(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "artifact").mkdir()  # an existing parent makes "artifact/demo-model" a path

    def no_hub(*args: object, **kwargs: object) -> None:
        raise AssertionError("a path was sent to the hub")

    monkeypatch.setattr(files_mod, "resolve_hub", no_hub)
    with pytest.raises(ModelFilesError, match=r"Model folder .* does not exist"):
        GistEncoder(name)


def test_model_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(ModelFilesError, match="got int"):
        GistEncoder(7)  # type: ignore[arg-type]


def test_none_is_the_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """GistEncoder(None), as callers pass an optional model on, is GistEncoder()."""
    from gist_onnx import loading
    from gist_onnx.model import DEFAULT_MODEL

    asked: list[object] = []

    def resolved(model: object, *args: object, **kwargs: object) -> None:
        asked.append(model)
        raise ModelFilesError("stop here")

    monkeypatch.setattr(loading, "resolve", resolved)
    with pytest.raises(ModelFilesError, match="stop here"):
        GistEncoder(None)
    with pytest.raises(ModelFilesError, match="stop here"):
        GistEncoder()
    assert asked == [DEFAULT_MODEL, DEFAULT_MODEL]


def test_a_repo_id_is_still_a_repo_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert not files_mod.looks_like_path("avsolatorio/GIST-all-MiniLM-L6-v2")
    assert not files_mod.looks_like_path("gist-modle")
    (tmp_path / "avsolatorio").mkdir()
    assert files_mod.looks_like_path("avsolatorio/GIST-all-MiniLM-L6-v2")


def test_unreadable_files_are_named_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root reads everything, so the refusal itself is checked here with os.access faked; the
    # real thing (an unprivileged user and a 0600 file) runs in test_deploy.py.
    folder = write_tiny_model(tmp_path / "m")
    graph = folder / "model.onnx"
    monkeypatch.setattr(layout.os, "access", lambda path, mode: Path(path) != graph)
    with pytest.raises(ModelFilesError, match=r"Permission denied.*model\.onnx.*chmod -R a\+rX"):
        GistEncoder(folder)


def test_files_are_checked_against_the_manifest(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "m")
    write_manifest(folder)
    texts = ["hello world", "the cat sat"]
    good = GistEncoder(folder).encode(texts)

    tokenizer = folder / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text() + " ")  # same tokenizer, other bytes
    with pytest.raises(ModelFilesError, match=r"tokenizer\.json in .* does not match the sha256"):
        GistEncoder(folder)
    # The opt-out loads what is there.
    np.testing.assert_allclose(GistEncoder(folder, verify_files=False).encode(texts), good)


def test_a_graph_the_manifest_does_not_list_is_refused(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "m")
    write_manifest(folder)
    (folder / "model.onnx").rename(folder / "model_int8.onnx")
    with pytest.raises(ModelFilesError, match=r"model_int8\.onnx is not among the files"):
        GistEncoder(folder, variant="int8")


def test_files_the_manifest_lists_but_the_folder_lacks_are_skipped(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "m")
    (folder / "vocab.txt").write_text("x\n")
    write_manifest(folder)
    (folder / "vocab.txt").unlink()  # a bundle leaves out what it does not read
    assert GistEncoder(folder).encode(["hello"]).shape == (1, 4)


def test_a_corrupted_graph_is_reported_as_corrupted(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "m")
    write_manifest(folder)
    graph = folder / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:40])  # ONNX Runtime cannot parse it
    with pytest.raises(ModelFilesError, match=r"model\.onnx in .* does not match"):
        GistEncoder(folder)


def test_hub_probe_reports_why_within_its_timeout() -> None:
    import time

    start = time.perf_counter()
    # Nothing listens on port 9 of the loopback: refused at once.
    assert "127.0.0.1:9" in str(files_mod.hub_unreachable("http://127.0.0.1:9", timeout=2))
    # A name that cannot resolve.
    assert files_mod.hub_unreachable("https://no-such-host.invalid", timeout=2) is not None
    assert time.perf_counter() - start < 6


def _as_sentence_transformers_6(folder: Path, pooling_mode: object) -> Path:
    """Rewrite a tiny folder's configs the way sentence-transformers 6 saves a model."""
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"embedding_dimension": 4, "pooling_mode": pooling_mode, "include_prompt": True})
    )
    (folder / "sentence_bert_config.json").write_text(
        json.dumps(
            {"transformer_task": "feature-extraction", "module_output_name": "token_embeddings"}
        )
    )
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 6}))
    return folder


@pytest.mark.parametrize(
    ("pooling_mode", "pooling"),
    [("mean", "mean"), (["cls"], "cls"), ("max", "max"), ("mean_sqrt_len_tokens", "mean_sqrt_len")],
)
def test_sentence_transformers_6_configs_are_read(
    tmp_path: Path, pooling_mode: object, pooling: str
) -> None:
    folder = _as_sentence_transformers_6(write_tiny_model(tmp_path / "m"), pooling_mode)
    config = read_config(folder)
    assert (config.pooling, config.dimension, config.max_seq_length) == (pooling, 4, 6)


@pytest.mark.parametrize("pooling_mode", ["weightedmean", "lasttoken", ["mean", "max"], []])
def test_sentence_transformers_6_pooling_gist_onnx_cannot_run_is_named(
    tmp_path: Path, pooling_mode: object
) -> None:
    folder = _as_sentence_transformers_6(write_tiny_model(tmp_path / "m"), pooling_mode)
    with pytest.raises(ModelConfigError, match="supports exactly one of mean, cls"):
        read_config(folder)


def test_each_file_of_the_folder_is_read_once_per_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One load reads every config (and the manifest) once: the folder is parsed into ModelFiles
    and ModelConfig, and every later stage takes what it needs from them. (The sha256 check
    reads files as bytes, apart.)"""
    import builtins
    import io

    folder = write_tiny_model(tmp_path / "model")
    write_manifest(folder)
    opened: list[str] = []
    real_open = io.open

    def counting(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if "b" not in mode and str(file).endswith(".json"):
            opened.append(Path(str(file)).relative_to(folder).as_posix())
        return real_open(file, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(io, "open", counting)
    monkeypatch.setattr(builtins, "open", counting)
    GistEncoder(folder)
    monkeypatch.undo()
    assert opened, "the count saw no file: the test no longer watches how files are opened"
    assert sorted(opened) == sorted(set(opened)), opened
