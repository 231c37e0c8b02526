"""Stage 2: text to token ids, with truncation at the model's max length, and padded batches.

The model's ``tokenizer.json`` may carry padding and truncation of its own (all-MiniLM-L6-v2's pads
every text to 128 tokens and cuts at 128); both are replaced here by what the sentence-transformers
config says, so short texts cost what they are and long ones are cut where sentence-transformers
cuts them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer, normalizers

from .errors import ModelConfigError, ModelFilesError
from .model import ModelConfig


@dataclass(frozen=True)
class Batch:
    """One padded batch, as the graph takes it."""

    input_ids: npt.NDArray[np.int64]
    attention_mask: npt.NDArray[np.int64]
    token_type_ids: npt.NDArray[np.int64]

    def __getitem__(self, name: str) -> npt.NDArray[np.int64]:
        """``batch["input_ids"]``, as a Hugging Face tokenizer's output is read."""
        if name not in ("input_ids", "attention_mask", "token_type_ids"):
            raise KeyError(name)
        value: npt.NDArray[np.int64] = getattr(self, name)
        return value


def _has_lowercase(normalizer: object) -> bool:
    text = repr(normalizer)
    return "Lowercase" in text or "lowercase=True" in text


# A long text is first cut to this many characters per token of max_length, at most (see
# TextTokenizer.tokenize): English runs 4-5 characters a token, so most texts past the limit are
# settled by the first cut and the rest by one or two doublings.
_CHARS_PER_TOKEN = 8
# And no text is read past this many characters per token of max_length (65,536 at 256), where
# the doublings stop: a text without word breaks ("x" * n, a run of combining marks or spaces)
# would otherwise be tokenized whole, in time and memory in proportion to its length (a 50 MB
# line: 64 s and 2.95 GB). WordPiece turns a word of over 100 characters into one [UNK], so the
# first 256 tokens of any text lie within it unless they need over 256 characters a token: long
# runs of spaces or marks, or words of over 256 characters (each of them one [UNK] anyway).
MAX_CHARS_PER_TOKEN = 256
# A lone surrogate (not valid Unicode; the tokenizer refuses it): found without copying the text.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Characters after which a BERT word has surely ended: ASCII whitespace, ASCII punctuation (the
# pre-tokenizer splits it off) and CJK ideographs (the normalizer puts spaces around them).
_WORD_END = re.compile(r"[ \t\n\r!-/:-@\[-`{-~\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` that truncates at the model's max length and pads per batch."""

    def __init__(self, tokenizer: Tokenizer, pad_token_id: int, max_length: int) -> None:
        self.backend = tokenizer
        self.pad_token_id = pad_token_id
        self.max_length = max_length
        # Batches padded to a multiple of this many tokens (capped at max_length): fewer distinct
        # shapes for a provider that pays for each new one (GistEncoder sets 8 with CUDA). 1: to
        # the longest text exactly. Padded tokens are masked, so vectors do not change.
        self.pad_multiple = 1
        # Cutting long texts before tokenizing is exact only where words end where _WORD_END
        # says they do: BERT's pre-tokenizer.
        self.cuts_long_texts = "BertPreTokenizer" in repr(tokenizer.pre_tokenizer)
        # One text's token type ids are its post-processor's, the same for every text: BERT's
        # are all 0, and pad() then fills no row of them (each .type_ids builds a Python list).
        probe = tokenizer.encode("a b", add_special_tokens=True)
        self.single_type_id: int | None = (
            probe.type_ids[0] if len(set(probe.type_ids)) == 1 else None
        )

    @property
    def max_chars(self) -> int:
        """Characters read of a text at most (see :data:`MAX_CHARS_PER_TOKEN`)."""
        return self.max_length * MAX_CHARS_PER_TOKEN

    def tokenize(self, texts: str | Sequence[str]) -> list[Any]:
        """Tokenize ``texts`` (truncated, unpadded) in parallel calls; returns Encodings.

        The tokenizer encodes a whole text even when it keeps only its first ``max_length``
        tokens, and keeps the rest as overflowing pieces: 600 texts of 100 KB took 4.7 GiB. So a
        text longer than ``max_length * 8`` characters is encoded cut to that length first. The
        result is the uncut text's exactly when the cut text fills ``max_length`` and a word ends
        between its last kept token and the cut (words before the cut are then whole, and
        WordPiece encodes each word on its own); otherwise the cut doubles and the text is encoded
        again, up to :attr:`max_chars` characters: no text is read further (see
        :data:`MAX_CHARS_PER_TOKEN`), so a text costs at most what that many characters cost.
        """
        texts = [texts] if isinstance(texts, str) else list(texts)  # a str is one text
        most = self.max_chars
        first = self.max_length * _CHARS_PER_TOKEN
        for i, text in enumerate(texts):
            # The tokenizer refuses text that is not valid Unicode (a lone surrogate); the part
            # cut off must not hide it, or the same text would pass or fail by its length.
            if len(text) > first and not text.isascii() and _SURROGATE.search(text):
                raise TypeError(f"text {i} is not valid Unicode")
        if not self.cuts_long_texts:
            return list(
                self.backend.encode_batch([t[:most] for t in texts], add_special_tokens=True)
            )
        cuts = {i: first for i, text in enumerate(texts) if len(text) > first}
        out = self.backend.encode_batch(
            [text[: cuts[i]] if i in cuts else text for i, text in enumerate(texts)],
            add_special_tokens=True,
        )
        while cuts:
            cuts = {
                i: min(cut * 2, most)
                for i, cut in cuts.items()
                if cut < min(len(texts[i]), most) and not self._settled(texts[i], out[i], cut)
            }
            encoded = self.backend.encode_batch(
                [texts[i][:cut] for i, cut in cuts.items()], add_special_tokens=True
            )
            for i, encoding in zip(cuts, encoded, strict=True):
                out[i] = encoding
        return list(out)

    def _settled(self, text: str, encoding: Any, cut: int) -> bool:
        """Whether ``encoding`` of ``text[:cut]`` is what the whole text encodes to."""
        if len(encoding) < self.max_length:
            return False  # the cut text does not fill max_length: more of the text is needed
        end = _end_of_last_token(encoding)
        return end is None or _WORD_END.search(text, end, cut) is not None

    def truncated(self, text: str, encoding: Any) -> bool:
        """Whether ``encoding`` (from :meth:`tokenize`) left tokens of ``text`` out."""
        if encoding.overflowing or len(text) > self.max_chars:
            return True  # past max_chars, characters were not read at all
        if len(encoding) < self.max_length:
            return False
        # Filled exactly, perhaps from a cut text: does anything after the last kept token make a
        # token? Looked at a window at a time, so a long tail costs little memory.
        end = _end_of_last_token(encoding) or 0
        window = self.max_length * _CHARS_PER_TOKEN
        for start in range(end, len(text), window):
            if len(self.backend.encode(text[start : start + window], add_special_tokens=False)):
                return True
        return False

    def pad(self, encodings: Sequence[Any]) -> Batch:
        """Stack encodings into one batch padded on the right to its longest member."""
        # Encodings come unpadded (load_tokenizer turns the file's padding off): every token is
        # attended, so the mask is 1 up to each length. Only the ids are read per row: each of
        # .ids, .attention_mask and .type_ids builds a Python list, and padding was ~10% of the
        # tokenizer's time with all three.
        lengths = [len(e) for e in encodings]
        width, multiple = max(lengths), self.pad_multiple
        if multiple > 1:
            width = max(width, min(-(-width // multiple) * multiple, self.max_length))
        shape = (len(encodings), width)
        ids = np.full(shape, self.pad_token_id, dtype=np.int64)
        mask = (np.arange(shape[1]) < np.array(lengths)[:, None]).astype(np.int64)
        same = self.single_type_id
        types = np.zeros(shape, dtype=np.int64) if same is None else mask * same
        for row, enc in enumerate(encodings):
            ids[row, : lengths[row]] = enc.ids
            if same is None:
                types[row, : lengths[row]] = enc.type_ids
        return Batch(input_ids=ids, attention_mask=mask, token_type_ids=types)

    def __call__(self, texts: str | Sequence[str]) -> Batch:
        """Tokenize and pad ``texts`` as one batch; one ``str`` is a batch of one text (as
        ``model.tokenizer("a text")`` is in sentence-transformers), never its characters."""
        return self.pad(self.tokenize([texts] if isinstance(texts, str) else texts))


def _end_of_last_token(encoding: Any) -> int | None:
    """Where (in characters of the text) the last token that is not a special token ends."""
    specials = encoding.special_tokens_mask
    last = next((i for i in range(len(specials) - 1, -1, -1) if not specials[i]), None)
    return None if last is None else int(encoding.offsets[last][1])


def load_tokenizer(
    folder: Path,
    *,
    max_length: int,
    do_lower_case: bool = False,
    config: ModelConfig | None = None,
) -> TextTokenizer:
    """Load the folder's tokenizer, set to truncate at ``max_length`` and not to pad.

    Padding is left to :func:`pad`, which pads each batch to its own longest text. With
    ``config``, the tokenizer is checked against the model it feeds (see :func:`check_fits`).
    """
    path = folder / "tokenizer.json"
    if path.is_file():
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise ModelConfigError(f"Could not load {path}: {exc}. Re-download it.") from exc
    elif (folder / "vocab.txt").is_file():
        tokenizer = _wordpiece_from_vocab(
            folder, config.tokenizer_config if config is not None else None
        )
    else:
        raise ModelFilesError(
            f"No tokenizer in {folder}: looked for tokenizer.json and vocab.txt. "
            "Copy the model's tokenizer files into the folder."
        )
    if do_lower_case and not _has_lowercase(tokenizer.normalizer):
        # sentence-transformers adds a Lowercase normalizer in front when do_lower_case is set.
        steps = [normalizers.Lowercase()]
        if tokenizer.normalizer is not None:
            steps.append(tokenizer.normalizer)
        tokenizer.normalizer = normalizers.Sequence(steps)

    padding: dict[str, Any] | None = tokenizer.padding
    if padding is not None:
        pad_token_id = int(padding.get("pad_id", 0))
    else:
        found = tokenizer.token_to_id("[PAD]")
        pad_token_id = int(found) if found is not None else 0
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.enable_truncation(max_length=max_length)
    if config is not None:
        check_fits(tokenizer, pad_token_id, config, folder)
    return TextTokenizer(tokenizer, pad_token_id, max_length)


# Models may round their embedding table up past the tokenizer's vocabulary (to a multiple of 64
# or 128, for speed); a larger gap means the tokenizer belongs to another model.
_VOCAB_SLACK = 128


def check_fits(tokenizer: Tokenizer, pad_token_id: int, config: ModelConfig, folder: Path) -> None:
    """Refuse a tokenizer that does not belong to the model: a vocabulary that does not match the
    model's (ids past its embedding table fail inside the graph; a much smaller one gives
    vectors unrelated to the right ones without a word), another padding id, special tokens it
    lacks, or lower-casing the model's tokenizer config does not have."""
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    where = f"the tokenizer in {folder}"
    if config.vocab_size is not None and not 0 <= config.vocab_size - size < _VOCAB_SLACK:
        raise ModelConfigError(
            f"{where} has {size} tokens but the model's vocabulary (config.json vocab_size) is "
            f"{config.vocab_size}: it belongs to another model. Copy the model's own "
            "tokenizer.json (the export does)."
        )
    if config.pad_token_id is not None and pad_token_id != config.pad_token_id:
        raise ModelConfigError(
            f"{where} pads with id {pad_token_id} but the model's pad_token_id (config.json) is "
            f"{config.pad_token_id}: it belongs to another model."
        )
    if config.vocab_size is not None:
        # The right number of tokens can still hold ids past the embedding table (a remapped
        # vocabulary, a post-processor's special ids): each would fail inside the graph.
        probe = tokenizer.encode("a b", add_special_tokens=True)
        top = max([*tokenizer.get_vocab(with_added_tokens=True).values(), *probe.ids])
        top = max(top, pad_token_id)
        if top >= config.vocab_size:
            raise ModelConfigError(
                f"{where} produces token id {top} but the model's vocabulary (config.json "
                f"vocab_size) has ids 0 to {config.vocab_size - 1}: it belongs to another model. "
                "Copy the model's own tokenizer.json (the export does)."
            )
    missing = [t for t in config.special_tokens if tokenizer.token_to_id(t) is None]
    if missing:
        raise ModelConfigError(
            f"{where} lacks the special tokens {missing} that tokenizer_config.json names: it "
            "belongs to another model."
        )
    if config.tokenizer_lowercase and not (
        config.do_lower_case or _has_lowercase(tokenizer.normalizer)
    ):
        raise ModelConfigError(
            f"tokenizer_config.json in {folder} says the model is uncased (do_lower_case) but "
            f"{where} does not lower-case: it belongs to another model."
        )


def _wordpiece_from_vocab(folder: Path, config: dict[str, Any] | None) -> Tokenizer:
    """Build the BERT WordPiece tokenizer from vocab.txt, for repos that ship no tokenizer.json;
    ``config`` is tokenizer_config.json as read with the model's configs (read here if None)."""
    from tokenizers import decoders, models, pre_tokenizers, processors

    if config is None:
        import json

        path = folder / "tokenizer_config.json"
        config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    vocab: dict[str, int] = {}
    with (folder / "vocab.txt").open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            vocab[line.rstrip("\n")] = index
    unk = str(config.get("unk_token", "[UNK]"))
    cls, sep = str(config.get("cls_token", "[CLS]")), str(config.get("sep_token", "[SEP]"))
    for token in (unk, cls, sep):
        if token not in vocab:
            raise ModelConfigError(f"{folder / 'vocab.txt'} lacks the special token {token!r}.")
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
        strip_accents=config.get("strip_accents"),
        lowercase=bool(config.get("do_lower_case", True)),
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.BertProcessing((sep, vocab[sep]), (cls, vocab[cls]))
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer
