"""Unit and model tiers: the input and model contract. Every bad input or mismatched model file
gets a clear error from the stage that owns it; long texts cost what their first tokens cost."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gist_onnx import GistEncoder, InvalidInputError, ModelConfigError
from gist_onnx.tokenizer import load_tokenizer
from tiny import DIM, write_tiny_model


@pytest.fixture
def tiny(tmp_path: Path) -> GistEncoder:
    return GistEncoder(write_tiny_model(tmp_path / "tiny"))


# ---------------------------------------------------------------------------------- inputs


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ({"b", "a"}, "got a set, whose order is not the caller's"),
        ({"a": 1}, "got a dict, whose order"),
        (None, "takes a list .* got NoneType"),
        (np.array("x"), r"sequence of texts .* got a ndarray of shape \(\)"),
        (np.array([["a", "b"]]), r"shape \(1, 2\)"),
        (5, "got int"),
    ],
)
def test_inputs_without_a_defined_order_or_shape_are_refused(
    tiny: GistEncoder, texts: Any, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        tiny.encode(texts)
    with pytest.raises(InvalidInputError, match=message.replace("encode", "count_tokens")):
        tiny.count_tokens(texts)


def test_a_1d_array_of_str_is_taken(tiny: GistEncoder) -> None:
    np.testing.assert_array_equal(
        tiny.encode(np.array(["hello", "cat"])), tiny.encode(["hello", "cat"])
    )


def test_batch_size_takes_numpy_integers_and_refuses_bools(tiny: GistEncoder) -> None:
    assert tiny.encode(["hello"] * 3, batch_size=np.int64(2)).shape == (3, DIM)
    for bad in (True, 2.0, "2", 0):
        with pytest.raises(InvalidInputError, match="batch_size must be a positive integer"):
            tiny.encode(["hello"], batch_size=bad)  # type: ignore[arg-type]


def test_a_text_that_is_not_unicode_is_named_by_its_index(tiny: GistEncoder) -> None:
    texts = ["fine"] * 1000
    texts[637] = "bad\udc80"
    with pytest.raises(InvalidInputError, match="Text 637 is not valid Unicode"):
        tiny.encode(texts)
    # With overlap, texts are reordered by length and tokenized a batch at a time: still named
    # by their index in the call (the bad one is the longest here, so it moves to the front).
    tiny.overlap = True
    with pytest.raises(InvalidInputError, match="Text 637 is not valid Unicode"):
        tiny.encode(texts, batch_size=8)
    with pytest.raises(InvalidInputError, match="Text 637 is not valid Unicode"):
        tiny.count_tokens(texts)


def test_a_surrogate_past_the_truncation_is_refused_too(tiny: GistEncoder) -> None:
    # Found by the property tier: a long text is cut before tokenizing, and the cut hid it.
    texts = ["fine", "hello " * 5_000 + "bad\udc80"]
    with pytest.raises(InvalidInputError, match="Text 1 is not valid Unicode"):
        tiny.encode(texts)


class Lying:
    """A sized iterable whose len() is not what it yields."""

    def __init__(self, claimed: int, real: int) -> None:
        self.claimed, self.real = claimed, real

    def __len__(self) -> int:
        return self.claimed

    def __iter__(self) -> Iterator[str]:
        return iter(["hello world"] * self.real)


@pytest.mark.parametrize(("claimed", "real"), [(10, 5), (3, 700)])
def test_the_output_has_one_row_per_text_given(tiny: GistEncoder, claimed: int, real: int) -> None:
    out = tiny.encode(Lying(claimed, real), batch_size=2)
    assert out.shape == (real, DIM)
    np.testing.assert_array_equal(out, np.repeat(tiny.encode(["hello world"]), real, axis=0))


def test_a_generator_of_unknown_length_fills_one_array(tiny: GistEncoder) -> None:
    texts = [f"hello {'cat ' * (i % 4)}" for i in range(5000)]
    out = tiny.encode(t for t in texts)
    assert out.shape == (5000, DIM) and out.flags.owndata and out.flags.c_contiguous
    np.testing.assert_array_equal(out, tiny.encode(texts))


# ------------------------------------------------------------------------------ model files


def _edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("file", "changes", "message"),
    [
        ("config.json", {"vocab_size": 30522}, "has 11 tokens but .* vocab_size\\) is 30522"),
        ("config.json", {"vocab_size": 5}, "has 11 tokens but .* is 5"),
        ("config.json", {"pad_token_id": 3}, "pads with id 0 but the model's pad_token_id"),
        ("tokenizer_config.json", {"cls_token": "<s>"}, r"lacks the special tokens \['<s>'\]"),
    ],
)
def test_a_tokenizer_from_another_model_is_refused(
    tmp_path: Path, file: str, changes: dict[str, Any], message: str
) -> None:
    folder = write_tiny_model(tmp_path / "m")
    _edit_json(folder / "config.json", vocab_size=11, pad_token_id=0)
    assert GistEncoder(folder).encode(["hello"]).shape == (1, DIM)  # fits as written
    _edit_json(folder / file, **changes)
    with pytest.raises(ModelConfigError, match=message):
        GistEncoder(folder)


def test_a_cased_tokenizer_for_an_uncased_model_is_refused(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, normalizers

    folder = write_tiny_model(tmp_path / "m")
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    tokenizer.save(str(folder / "tokenizer.json"))
    _edit_json(folder / "tokenizer_config.json", do_lower_case=True)
    with pytest.raises(ModelConfigError, match="does not lower-case"):
        GistEncoder(folder)


def test_max_seq_length_past_the_position_embeddings_is_refused(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "m")
    _edit_json(folder / "config.json", max_position_embeddings=512)
    _edit_json(folder / "sentence_bert_config.json", max_seq_length=100000)
    with pytest.raises(ModelConfigError, match=r"is 100000, but .* for 512 tokens"):
        GistEncoder(folder)


@pytest.mark.parametrize("modules", [[1, 2, 3], {"a": 1}, ["x"]])
def test_a_malformed_modules_json_is_a_config_error(tmp_path: Path, modules: Any) -> None:
    folder = write_tiny_model(tmp_path / "m")
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelConfigError, match=r"modules\.json should hold a list of module"):
        GistEncoder(folder)


@pytest.mark.model
def test_pooling_configs_that_contradict_the_graph_are_refused(
    exported: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(exported, folder)
    _edit_json(
        folder / "1_Pooling" / "config.json",
        pooling_mode_mean_tokens=False,
        pooling_mode_cls_token=True,
    )
    # The manifest's sha256 catches the edit first; past it, the pooling check does.
    with pytest.raises(Exception, match=r"1_Pooling/config\.json .* does not match"):
        GistEncoder(folder)
    with pytest.raises(ModelConfigError, match=r"pools by mean and normalizing inside .* cls"):
        GistEncoder(folder, verify_files=False)


# ----------------------------------------------------------------------------- long texts


LONG_TEXTS = [
    "word " * 200_000,
    "unbelievable " * 30_000,
    ("x" * 150 + " ") * 700,
    "中" * 50_000,
    " " * 100_000 + "tail",
    "a" * 100_000,
    "Ünïcödé, naïve café! " * 5_000,
    "e\u0301" * 40_000,
    "😀👍🏽 " * 20_000,
    "don't stop-believing; ok? " * 4_000,
    "short text",
    "",
]


@pytest.mark.model
def test_long_texts_are_cut_before_tokenizing_with_the_same_tokens(stand_in_dir: Path) -> None:
    cut = load_tokenizer(stand_in_dir, max_length=256)
    whole = load_tokenizer(stand_in_dir, max_length=256)
    whole.cuts_long_texts = False
    assert cut.cuts_long_texts  # BERT's pre-tokenizer: cutting is exact
    rng = np.random.default_rng(0)
    words = ["the", "unbelievable", "café", "x" * 120, "中文", "!!", "\t", "\n", "😀", "it's", "a"]
    mixed = [
        "".join(str(w) + str(rng.choice([" ", "", ","])) for w in rng.choice(words, size=n))
        for n in rng.integers(200, 6_000, size=60)
    ]
    texts = LONG_TEXTS + mixed
    ours = cut.tokenize(texts)
    # The reference: the backend itself on the whole text, and on its first max_chars.
    reference = whole.backend.encode_batch(texts, add_special_tokens=True)
    read = whole.backend.encode_batch([t[: cut.max_chars] for t in texts], add_special_tokens=True)
    for text, a, b, r in zip(texts, ours, reference, read, strict=True):
        assert a.ids == r.ids, text[:40]  # exactly the text's first max_chars characters
        if not text.startswith(" " * cut.max_chars):  # 256 tokens come before max_chars
            assert a.ids == b.ids, text[:40]
        assert cut.truncated(text, a) == (bool(b.overflowing) or len(text) > cut.max_chars)
    # What made 600 texts of 100 KB take 4.7 GiB: every overflowing piece kept (~131 a text).
    assert sum(len(e.overflowing) for e in ours[:6]) <= 6 * 8
    assert sum(len(e.overflowing) for e in reference[:6]) > 6 * 100


@pytest.mark.model
def test_truncated_and_count_tokens_say_what_the_model_reads(exported: Path) -> None:
    encoder = GistEncoder(exported, variant="int8")
    texts = ["short text", "word " * 10_000, "word " * 254, "word " * 255]
    assert encoder.count_tokens(texts).tolist() == [4, 256, 256, 256]
    assert encoder.truncated(texts).tolist() == [False, True, False, True]
