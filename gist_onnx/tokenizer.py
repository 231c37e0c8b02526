"""Stage 2: text to token ids, with truncation at the model's max length, and padded batches.

The model's ``tokenizer.json`` may carry padding and truncation of its own (all-MiniLM-L6-v2's pads
every text to 128 tokens and cuts at 128); both are replaced here by what the sentence-transformers
config says, so short texts cost what they are and long ones are cut where sentence-transformers
cuts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer, normalizers

from .errors import ModelConfigError, ModelFilesError


@dataclass(frozen=True)
class Batch:
    """One padded batch, as the graph takes it."""

    input_ids: npt.NDArray[np.int64]
    attention_mask: npt.NDArray[np.int64]
    token_type_ids: npt.NDArray[np.int64]


def _has_lowercase(normalizer: object) -> bool:
    text = repr(normalizer)
    return "Lowercase" in text or "lowercase=True" in text


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` that truncates at the model's max length and pads per batch."""

    def __init__(self, tokenizer: Tokenizer, pad_token_id: int, max_length: int) -> None:
        self.backend = tokenizer
        self.pad_token_id = pad_token_id
        self.max_length = max_length

    def tokenize(self, texts: Sequence[str]) -> list[Any]:
        """Tokenize ``texts`` (truncated, unpadded) in one parallel call; returns Encodings."""
        return list(self.backend.encode_batch(list(texts), add_special_tokens=True))

    def pad(self, encodings: Sequence[Any]) -> Batch:
        """Stack encodings into one batch padded on the right to its longest member."""
        longest = max(len(e.ids) for e in encodings)
        shape = (len(encodings), longest)
        ids = np.full(shape, self.pad_token_id, dtype=np.int64)
        mask = np.zeros(shape, dtype=np.int64)
        types = np.zeros(shape, dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = enc.attention_mask
            types[row, :n] = enc.type_ids
        return Batch(input_ids=ids, attention_mask=mask, token_type_ids=types)

    def __call__(self, texts: Sequence[str]) -> Batch:
        """Tokenize and pad ``texts`` as one batch."""
        return self.pad(self.tokenize(texts))


def load_tokenizer(folder: Path, *, max_length: int, do_lower_case: bool = False) -> TextTokenizer:
    """Load the folder's tokenizer, set to truncate at ``max_length`` and not to pad.

    Padding is left to :func:`pad`, which pads each batch to its own longest text.
    """
    path = folder / "tokenizer.json"
    if path.is_file():
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise ModelConfigError(f"Could not load {path}: {exc}. Re-download it.") from exc
    elif (folder / "vocab.txt").is_file():
        tokenizer = _wordpiece_from_vocab(folder)
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
    return TextTokenizer(tokenizer, pad_token_id, max_length)


def _wordpiece_from_vocab(folder: Path) -> Tokenizer:
    """Build the BERT WordPiece tokenizer from vocab.txt, for repos that ship no tokenizer.json."""
    import json

    from tokenizers import decoders, models, pre_tokenizers, processors

    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
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
