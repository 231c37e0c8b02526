"""STS quality: Spearman correlation (x100) between cosine similarity and gold scores.

Used by the tests and the benchmarks on the STS Benchmark test set shipped in ``export/data/sts``
and, when ``GIST_STS_DIR`` names a folder holding them, the SemEval STS 2012-2016 test sets
(``sts12_test.tsv`` ... ``sts16_test.tsv``), scored over all rows of a file as MTEB does.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STS_SETS = ("stsb", "sts12", "sts13", "sts14", "sts15", "sts16")
SHIPPED = Path(__file__).resolve().parent / "data" / "sts"


@dataclass(frozen=True)
class StsSet:
    """One STS test file: sentence pairs and their gold scores."""

    name: str
    first: list[str]
    second: list[str]
    gold: np.ndarray

    @property
    def sentences(self) -> list[str]:
        """Every distinct sentence, in a fixed order."""
        return sorted(set(self.first) | set(self.second))


def sts_path(name: str) -> Path | None:
    """Where ``{name}_test.tsv`` is: in ``$GIST_STS_DIR`` if set and there, else shipped here."""
    extra = os.environ.get("GIST_STS_DIR")
    for folder in (Path(extra) if extra else None, SHIPPED):
        if folder is not None and (folder / f"{name}_test.tsv").is_file():
            return folder / f"{name}_test.tsv"
    return None


def available_sets(names: Sequence[str] = STS_SETS) -> list[str]:
    """The STS sets that can be read here: STS-B always, the others with ``GIST_STS_DIR``."""
    return [name for name in names if sts_path(name) is not None]


def load_sts(name: str) -> StsSet:
    """Read the STS set ``name`` (see :func:`sts_path`)."""
    path = sts_path(name)
    if path is None:
        raise FileNotFoundError(
            f"{name}_test.tsv is not shipped; set GIST_STS_DIR to a folder that holds it."
        )
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return StsSet(
        name=name,
        first=[r["sentence1"] for r in rows],
        second=[r["sentence2"] for r in rows],
        gold=np.array([float(r["score"]) for r in rows]),
    )


def spearman(data: StsSet, encode: Callable[[Sequence[str]], np.ndarray]) -> float:
    """Spearman x 100 of the cosine of each pair, with each sentence encoded once."""
    from scipy.stats import spearmanr

    sentences = data.sentences
    vectors = np.asarray(encode(sentences), dtype=np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    index = {s: i for i, s in enumerate(sentences)}
    a = vectors[[index[s] for s in data.first]]
    b = vectors[[index[s] for s in data.second]]
    return float(spearmanr((a * b).sum(axis=1), data.gold).statistic * 100)


def main(argv: list[str] | None = None) -> int:
    """Print STS Spearman for each graph of an export folder, and for the torch reference."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(
        prog="python export/sts.py",
        description="STS Spearman (x100) of an exported folder's graphs and of the torch model.",
    )
    parser.add_argument("folder", type=Path, help="a folder written by gist-onnx export")
    parser.add_argument(
        "--reference", default=None, help="model folder to run with sentence-transformers too"
    )
    parser.add_argument(
        "--sets",
        default=",".join(available_sets()),
        help="comma-separated STS sets (default: those available; STS-B is shipped, the others "
        "are read from GIST_STS_DIR)",
    )
    args = parser.parse_args(argv)
    missing = [name for name in args.sets.split(",") if sts_path(name) is None]
    if missing:
        print(f"error: {', '.join(missing)} not found; set GIST_STS_DIR", file=sys.stderr)
        return 2
    from gist_onnx import GistEncoder

    encoders: dict[str, Callable[[Sequence[str]], np.ndarray]] = {}
    for variant in ("fp32", "int8"):
        if (args.folder / f"model{'' if variant == 'fp32' else '_' + variant}.onnx").is_file():
            encoders[f"gist-onnx {variant}"] = GistEncoder(args.folder, variant=variant).encode
    if args.reference:
        from sentence_transformers import SentenceTransformer

        torch_model = SentenceTransformer(args.reference, device="cpu")
        encoders["sentence-transformers torch"] = lambda s: torch_model.encode(
            list(s), batch_size=64
        )
    results = {
        label: {name: round(spearman(load_sts(name), fn), 2) for name in args.sets.split(",")}
        for label, fn in encoders.items()
    }
    names = args.sets.split(",")
    print("| stack | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for label, scores in results.items():
        print(f"| {label} | " + " | ".join(f"{scores[n]:.2f}" for n in names) + " |")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
