"""Unit tier: reading the model folder, and finding graphs, with the errors users see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gist_onnx import GistEncoder, ModelConfigError, ModelFilesError
from gist_onnx.files import read_config, resolve
from tiny import write_tiny_model


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
