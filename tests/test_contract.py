"""Unit and model tiers: the input and model contract. Every bad input or mismatched model file
gets a clear error from the stage that owns it; long texts cost what their first tokens cost."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gist_onnx import GistEncoder, InvalidInputError, ModelConfigError
from gist_onnx.tokenizer import load_tokenizer
from tests.support.tiny import DIM, write_tiny_model


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


# ----------------------------------------------------------- edges: what is not a text column


class _Table:
    """A table as pandas, polars and pyarrow have them: a shape of 2 and columns; iterating it
    yields column names (str), which is what made a 3-row DataFrame one vector."""

    shape = (3, 2)
    columns = ("text", "n")

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    def __len__(self) -> int:
        return 2


def _frame() -> Any:
    pd = pytest.importorskip("pandas", reason="the pandas extra")
    return pd.DataFrame({"text": ["a cat", "the mat", "hello"], "n": [1, 2, 3]})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_frame, r'got a DataFrame of shape \(3, 2\); pass one column of it, e.g. df\["text"\]'),
        (_Table, r'got a _Table of shape \(3, 2\); pass one column of it, e.g. df\["text"\]'),
        (lambda: np.array([["a"], ["b"], ["c"]]), r"got a ndarray of shape \(3, 1\)"),
        (lambda: np.zeros((2, 2, 2)), r"got a ndarray of shape \(2, 2, 2\)"),
        (lambda: iter([b"bytes", b"more"]), "Text 0 is of type bytes, not str"),
        (lambda: (n for n in [1, 2]), "Text 0 is of type int, not str"),
        (lambda: iter([["a", "b"]]), "Text 0 is of type list, not str"),
    ],
)
def test_what_is_not_a_column_of_texts_is_refused_naming_what_to_pass(
    tiny: GistEncoder, make: Any, message: str
) -> None:
    for method in (tiny.encode, tiny.count_tokens, tiny.token_ids, tiny.truncated):
        with pytest.raises(InvalidInputError, match=message):
            method(make())


def test_a_dataframe_column_is_taken(tiny: GistEncoder) -> None:
    frame = _frame()
    np.testing.assert_array_equal(tiny.encode(frame["text"]), tiny.encode(list(frame["text"])))


@pytest.mark.parametrize("size", [2**63, 2**20 + 1, np.int64(2**40), 10**30])
def test_a_batch_size_past_the_largest_is_an_input_error(tiny: GistEncoder, size: Any) -> None:
    with pytest.raises(InvalidInputError, match=r"batch_size must be .* at most 1,048,576"):
        tiny.encode(["hello"], batch_size=size)
    assert tiny.encode(["hello"], batch_size=2**20).shape == (1, DIM)


# ----------------------------------------------------- edges: text no cut before can bound


@pytest.mark.parametrize(
    "text",
    [
        "x" * 1_000_000,  # no word break at all
        "a" + "\u0301" * 1_000_000,  # combining marks, which the normalizer strips
        " " * 1_000_000 + "hello",  # spaces
        "\u200b" * 1_000_000,  # zero-width spaces
        "hello " * 10 + "y" * 1_000_000,  # words, then none
        "hello" + "!" * 1_000_000,  # punctuation: every character a token
    ],
)
def test_no_text_is_read_past_max_chars_whatever_its_spaces(tiny: GistEncoder, text: str) -> None:
    """A bound in characters that does not depend on word breaks: the tokenizer is never handed
    more than max_chars characters of a text, and the text's vector is that of its beginning."""
    backend = tiny.tokenizer.backend
    handed: list[int] = []

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(backend, name)

        def encode_batch(self, texts: list[str], **kwargs: Any) -> Any:
            handed.extend(len(t) for t in texts)
            return backend.encode_batch(texts, **kwargs)

        def encode(self, text: str, **kwargs: Any) -> Any:
            handed.append(len(text))
            return backend.encode(text, **kwargs)

    most = tiny.tokenizer.max_chars
    assert most == 6 * 256  # the tiny model's max_seq_length, 256 characters a token
    tiny.tokenizer.backend = Spy()  # type: ignore[assignment]
    try:
        vector = tiny.encode([text])
        assert tiny.truncated([text]).tolist() == [True]
        assert tiny.count_tokens([text])[0] <= 6
    finally:
        tiny.tokenizer.backend = backend
    assert handed and max(handed) <= most
    np.testing.assert_array_equal(vector, tiny.encode([text[:most]]))


def test_a_tokenizer_whose_ids_run_past_the_vocabulary_is_refused_at_load(tmp_path: Path) -> None:
    """The right number of tokens, but ids past the embedding table: refused when loading, not
    inside ONNX Runtime at the first encode."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    from tests.support.tiny import VOCAB

    folder = write_tiny_model(tmp_path / "m")
    _edit_json(folder / "config.json", vocab_size=len(VOCAB), pad_token_id=0)
    remapped = {t: (i if t != "mat" else 5000) for i, t in enumerate(VOCAB)}
    tok = Tokenizer(models.WordPiece(remapped, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    tok.save(str(folder / "tokenizer.json"))
    with pytest.raises(ModelConfigError, match=r"produces token id 5000 .* ids 0 to 10"):
        GistEncoder(folder)
    # The post-processor's own ids count too: a [CLS] of id 99.
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 99))
    tok.save(str(folder / "tokenizer.json"))
    with pytest.raises(ModelConfigError, match=r"produces token id 99"):
        GistEncoder(folder)


# --------------------------------------------------------- edges: what the manifest vouches


def test_a_manifest_that_leaves_out_a_file_the_encoder_reads_is_refused(tmp_path: Path) -> None:
    from tests.support.tiny import write_manifest

    folder = write_tiny_model(tmp_path / "m")
    write_manifest(folder)
    encoder = GistEncoder(folder)
    read = [p.relative_to(folder).as_posix() for p in encoder.files_read]
    read.remove("gist_onnx_manifest.json")
    assert set(read) >= {"model.onnx", "tokenizer.json", "modules.json", "1_Pooling/config.json"}
    for name in read:
        manifest = write_manifest(folder)
        data = json.loads(manifest.read_text())
        del data["files"][name]
        manifest.write_text(json.dumps(data))
        vouches = rf"(does not vouch for {name}, which the encoder reads|{name} is not among)"
        with pytest.raises(Exception, match=vouches):
            GistEncoder(folder)
        GistEncoder(folder, verify_files=False)  # the caller's explicit choice


@pytest.mark.parametrize(
    "entry", ["../outside.txt", "/etc/hostname", "a/../../outside.txt", "C:\\x", "", "..", "."]
)
def test_manifest_entries_outside_the_folder_are_refused_unopened(
    tmp_path: Path, entry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gist_onnx import ModelFilesError
    from tests.support.tiny import write_manifest

    folder = write_tiny_model(tmp_path / "m")
    (tmp_path / "outside.txt").write_text("not the model's")
    manifest = write_manifest(folder)
    data = json.loads(manifest.read_text())
    data["files"][entry] = "0" * 64
    manifest.write_text(json.dumps(data))
    opened: list[str] = []
    real_open = Path.open

    def watch(self: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", watch)
    with pytest.raises(ModelFilesError, match="a path outside the model folder"):
        GistEncoder(folder)
    names = {Path(p).resolve().name for p in opened}
    assert not names & {"outside.txt", "hostname", "x"}, names


def test_a_manifest_that_is_not_json_is_ignored_only_when_asked(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "m")
    (folder / "gist_onnx_manifest.json").write_text("{not json")
    with pytest.raises(ModelConfigError, match=r"gist_onnx_manifest\.json"):
        GistEncoder(folder)
    assert GistEncoder(folder, verify_files=False).encode(["hello"]).shape == (1, DIM)


def test_a_model_folder_any_user_may_write_is_warned_about(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GistEncoder(folder)  # a folder only its owner writes: no warning
    folder.chmod(0o777)
    with pytest.warns(UserWarning, match=r"can be written by every user .* chmod -R o-w"):
        GistEncoder(folder)
    folder.chmod(0o755)
    (folder / "tokenizer.json").chmod(0o666)
    with pytest.warns(UserWarning, match=r"tokenizer\.json can be written by every user"):
        GistEncoder(folder)
    (folder / "tokenizer.json").chmod(0o644)
    folder.chmod(0o1777)  # sticky, like /tmp: others cannot replace the owner's files
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GistEncoder(folder)


# --------------------------------------------------- edges: the graph says how it pools


@pytest.mark.model
def test_every_exported_graph_records_its_pooling_in_its_metadata(exported: Path) -> None:
    import onnxruntime as ort

    for name in ("model.onnx", "model_int8.onnx", "model_int8_u8s8.onnx", "model_fp16.onnx"):
        session = ort.InferenceSession(str(exported / name), providers=["CPUExecutionProvider"])
        recorded = session.get_modelmeta().custom_metadata_map
        assert recorded["gist_onnx.pooling"] == "mean", name
        assert recorded["gist_onnx.normalize"] == "true", name


@pytest.mark.model
@pytest.mark.parametrize("manifest", [True, False])
def test_pooling_configs_against_the_graph_are_checked_with_or_without_a_manifest(
    exported: Path, tmp_path: Path, manifest: bool
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(exported, folder, ignore=shutil.ignore_patterns("model_*"))
    if not manifest:
        (folder / "gist_onnx_manifest.json").unlink()
    _edit_json(
        folder / "1_Pooling" / "config.json",
        pooling_mode_mean_tokens=False,
        pooling_mode_cls_token=True,
    )
    with pytest.raises(ModelConfigError, match=r"pools by mean and normalizing inside \(its ONNX"):
        GistEncoder(folder, verify_files=False)


@pytest.mark.model
def test_a_missing_modules_json_is_named_as_missing(exported: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(exported, folder, ignore=shutil.ignore_patterns("model_*"))
    (folder / "modules.json").unlink()
    with pytest.raises(ModelConfigError, match=r"has no modules\.json, which says whether"):
        GistEncoder(folder)


@pytest.mark.model
def test_a_pooled_graph_that_records_nothing_loads_unchecked_with_a_warning(
    exported: Path, tmp_path: Path
) -> None:
    import onnx

    folder = tmp_path / "model"
    # The int8 graph alone, in one form (the u8 x s8 one records its pooling too).
    shutil.copytree(
        exported,
        folder,
        ignore=shutil.ignore_patterns("model.onnx*", "model_fp16*", "model_int8_u8s8*"),
    )
    (folder / "gist_onnx_manifest.json").unlink()
    graph = onnx.load(str(folder / "model_int8.onnx"))
    del graph.metadata_props[:]
    onnx.save(
        graph,
        str(folder / "model_int8.onnx"),
        save_as_external_data=True,
        location="model_int8.onnx.data",
    )
    with pytest.warns(UserWarning, match="neither its ONNX metadata nor a gist_onnx_manifest"):
        encoder = GistEncoder(folder, variant="int8")
    assert encoder.pooling == "mean (graph, unchecked)"
