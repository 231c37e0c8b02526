"""A tiny model folder for unit tests: a real tokenizer and a one-op ONNX graph.

The graph looks up a fixed vector per token id (Gather), so every expected output can be
computed by hand in numpy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "the", "cat", "sat", "on", "mat"]
DIM = 4
TABLE = np.random.default_rng(0).normal(size=(len(VOCAB), DIM)).astype(np.float32)


def _table(seed: int | None) -> np.ndarray:
    if seed is None:
        return TABLE
    return np.random.default_rng(seed).normal(size=TABLE.shape).astype(np.float32)


def write_tiny_model(
    folder: Path,
    *,
    max_seq_length: int = 6,
    normalize: bool = True,
    pooling: str = "pooling_mode_mean_tokens",
    graph_name: str = "model.onnx",
    seed: int | None = None,
) -> Path:
    """Write tokenizer, sentence-transformers configs and a Gather graph into ``folder`` (its
    table :data:`TABLE`, or another drawn from ``seed``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    tok.save(str(folder / "tokenizer.json"))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False})
    )
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": DIM, pooling: True})
    )
    (folder / "config.json").write_text(json.dumps({"hidden_size": DIM, "model_type": "bert"}))

    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["last_hidden_state"], axis=0)],
        "tiny",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info(
                "attention_mask", TensorProto.INT64, ["batch", "sequence"]
            ),
        ],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", DIM]
            )
        ],
        [numpy_helper.from_array(_table(seed), "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (folder / graph_name).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / graph_name))
    return folder


def expected(ids: list[list[int]], *, normalize: bool = True) -> np.ndarray:
    """Mean of the table rows of each text's ids (special tokens included), then normalized."""
    out = np.stack([TABLE[row].mean(axis=0) for row in ids])
    if normalize:
        out = out / np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def write_manifest(folder: Path) -> Path:
    """Write a ``gist_onnx_manifest.json`` listing the sha256 of every file, as the export does."""
    import hashlib

    files = {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "gist_onnx_manifest.json"
    }
    path = folder / "gist_onnx_manifest.json"
    path.write_text(json.dumps({"format": 1, "files": files}))
    return path
