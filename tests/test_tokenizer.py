"""Unit tier: tokenizer loading, truncation and per-batch padding, on a tokenizer built here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from gist_onnx.errors import ModelFilesError
from gist_onnx.tokenizer import load_tokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "the", "cat", "sat", "##s"]


def _write_tokenizer_json(folder: Path, *, fixed_padding: int | None = None) -> None:
    vocab = {t: i for i, t in enumerate(VOCAB)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    if fixed_padding:
        # What all-MiniLM-L6-v2's tokenizer.json carries: fixed padding and truncation at 128.
        tok.enable_padding(pad_id=0, pad_token="[PAD]", length=fixed_padding)
        tok.enable_truncation(max_length=fixed_padding)
    tok.save(str(folder / "tokenizer.json"))


def test_pads_to_longest_text_not_to_the_files_fixed_length(tmp_path: Path) -> None:
    _write_tokenizer_json(tmp_path, fixed_padding=16)
    tok = load_tokenizer(tmp_path, max_length=8)
    batch = tok(["hello", "the cat sat"])
    assert batch.input_ids.shape == (2, 5)
    assert batch.input_ids.tolist() == [[2, 4, 3, 0, 0], [2, 6, 7, 8, 3]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch.token_type_ids.tolist() == [[0] * 5, [0] * 5]


def test_pad_multiple_rounds_the_width_up_and_masks_the_extra_tokens(tmp_path: Path) -> None:
    _write_tokenizer_json(tmp_path)
    tok = load_tokenizer(tmp_path, max_length=10)
    tok.pad_multiple = 4
    batch = tok(["hello", "the cat sat"])  # longest: 5 tokens -> 8
    assert batch.input_ids.tolist() == [[2, 4, 3, 0, 0, 0, 0, 0], [2, 6, 7, 8, 3, 0, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [1] * 5 + [0] * 3]
    assert tok(["the cat"]).input_ids.shape == (1, 4)  # already a multiple: unchanged
    # never past max_length (10, not 12), and never narrower than the longest text
    assert tok(["the cat sat the cat sat the cat"]).input_ids.shape == (1, 10)
    tok.pad_multiple = 64
    assert tok(["hello"]).input_ids.shape == (1, 10)


def test_truncates_at_max_length_keeping_sep(tmp_path: Path) -> None:
    _write_tokenizer_json(tmp_path, fixed_padding=16)
    tok = load_tokenizer(tmp_path, max_length=4)
    ids = tok(["the cat sat the cat sat"]).input_ids.tolist()
    assert ids == [[2, 6, 7, 3]]


def test_vocab_txt_fallback_matches_tokenizer_json(tmp_path: Path) -> None:
    json_dir, vocab_dir = tmp_path / "json", tmp_path / "vocab"
    json_dir.mkdir()
    vocab_dir.mkdir()
    _write_tokenizer_json(json_dir)
    (vocab_dir / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    (vocab_dir / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    texts = ["Hello World", "the cats", "unknownword"]
    a = load_tokenizer(json_dir, max_length=16)(texts).input_ids
    b = load_tokenizer(vocab_dir, max_length=16)(texts).input_ids
    assert a.tolist() == b.tolist()
    assert b.tolist()[1] == [2, 6, 7, 9, 3]


def test_do_lower_case_adds_lowercasing(tmp_path: Path) -> None:
    vocab = {t: i for i, t in enumerate(VOCAB)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    assert load_tokenizer(tmp_path, max_length=8)(["HELLO"]).input_ids.tolist() == [[1]]
    lowered = load_tokenizer(tmp_path, max_length=8, do_lower_case=True)
    assert lowered(["HELLO"]).input_ids.tolist() == [[4]]


def test_missing_tokenizer_says_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesError, match=r"tokenizer\.json and vocab\.txt"):
        load_tokenizer(tmp_path, max_length=8)


@pytest.mark.parametrize(
    "template",
    [
        None,  # BERT's: every type id 0
        ("[CLS]:1 $A:1 [SEP]:1", "all 1"),
        ("[CLS]:0 $A:1 [SEP]:1", "mixed"),
    ],
)
def test_padded_batches_match_each_encodings_own_ids_mask_and_types(
    tmp_path: Path, template: tuple[str, str] | None
) -> None:
    import numpy as np

    _write_tokenizer_json(tmp_path)
    if template is not None:
        tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
        tok.post_processor = processors.TemplateProcessing(
            single=template[0], special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
        tok.save(str(tmp_path / "tokenizer.json"))
    tokenizer = load_tokenizer(tmp_path, max_length=6)
    texts = ["hello", "the cat sat", "hello world the cat sat cats", ""]
    encodings = tokenizer.tokenize(texts)
    batch = tokenizer.pad(encodings)
    longest = max(len(e.ids) for e in encodings)
    for row, enc in enumerate(encodings):
        pad = longest - len(enc.ids)
        assert batch.input_ids[row].tolist() == enc.ids + [tokenizer.pad_token_id] * pad
        assert batch.attention_mask[row].tolist() == enc.attention_mask + [0] * pad
        assert batch.token_type_ids[row].tolist() == enc.type_ids + [0] * pad
    assert batch.input_ids.dtype == batch.attention_mask.dtype == np.int64
    assert batch.token_type_ids.dtype == np.int64
    if template is not None:
        assert batch.token_type_ids.any()
