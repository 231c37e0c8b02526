"""Export stage 4 (``--web``): the same graphs for transformers.js and onnxruntime-web.

``web/`` in the export folder is a model folder transformers.js loads from disk as a
``feature-extraction`` pipeline::

    web/config.json  tokenizer.json  tokenizer_config.json  special_tokens_map.json
    web/onnx/model.onnx        dtype "fp32"
    web/onnx/model_int8.onnx   dtype "int8"
    web/modules.json  sentence_bert_config.json  1_Pooling/config.json   (so gist-onnx loads it too)

Why not the pooled graphs themselves: transformers.js's pipeline reads ``last_hidden_state`` (or
``logits``, ``token_embeddings``) and pools in JavaScript (``pooling: "mean", normalize: true``);
a graph whose only output is the sentence vector is not read. So each web graph is the Python
graph of the same variant with its pooling tail cut off: the same nodes and weights up to the last
layer norm, whose output (batch, tokens, 384) becomes ``last_hidden_state``. Mean pooling over
the mask and L2 normalization, done in JavaScript, then give the vector the pooled graph gives.
Each graph is one file (no ``.data``: a browser fetches one URL per graph).

The tokenizer files carry the model's own length limit (``max_seq_length``, 256 for GIST) as
their truncation and ``model_max_length``: the hub's ``tokenizer.json`` for MiniLM truncates at
128 and its ``tokenizer_config.json`` says 512, and transformers.js reads the latter, so long
texts got other vectors than sentence-transformers'. And transformers.js truncates a text after
adding its special tokens, so a text cut at 256 tokens loses its final ``[SEP]`` (255 word pieces
and no ``[SEP]``, where sentence-transformers reads 254 and ``[SEP]``): each web graph starts
with four nodes that put ``[SEP]`` back as the last token of a row that fills ``max_seq_length``
(a no-op for a tokenizer that kept it, and for every shorter text).

The export's check runs each web graph through gist-onnx (which pools a ``last_hidden_state``
graph in numpy, as transformers.js does) against sentence-transformers, with the thresholds of its
variant, and the manifest lists the web files with their figures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..model.configs import ModelConfig
from ..model.layout import exported_graph

WEB = "web"
HIDDEN = "last_hidden_state"
# The files transformers.js reads beside the graphs, and those gist-onnx reads to pool.
TOKENIZER_FILES = ("config.json", "special_tokens_map.json", "vocab.txt")
POOLING_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def hidden_state_graph(
    graph_path: Path, out_path: Path, dimension: int, *, sep: int | None, limit: int
) -> int:
    """Write ``graph_path`` without its pooling tail, ``last_hidden_state`` its one output, as one
    file, ``[SEP]`` restored in rows cut at ``limit`` (see :func:`restore_sep`); returns its node
    count."""
    import onnx
    from onnx import helper

    from ..session import METADATA_NORMALIZE, METADATA_POOLING

    model = onnx.load(str(graph_path))  # with its weights: the web graph is one file
    graph = model.graph
    nodes = list(graph.node)
    produced = {out: node for node in nodes for out in node.output}
    # The pooling module's first node multiplies the token vectors by the mask: its other input is
    # the (batch, tokens, dim) tensor the web graph returns.
    first = next(n for n in nodes if n.name.startswith("/pool/") and n.op_type == "Mul")
    hidden = next(
        name
        for name in first.input
        if name in produced and not produced[name].name.startswith("/pool/")
    )
    identity = helper.make_node("Identity", [hidden], [HIDDEN], name="web/last_hidden_state")
    # Keep only what the new output needs (the whole pooling tail goes).
    needed, keep = {hidden}, []
    for node in reversed(nodes):
        if any(out in needed for out in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    kept = [*reversed(keep), identity]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(
            HIDDEN, onnx.TensorProto.FLOAT, ["batch", "sequence", dimension]
        )
    )
    used = {i for n in kept for i in n.input}
    initializers = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    # The recorded pooling described the pooled graph; this one pools outside.
    kept_meta = [
        p for p in model.metadata_props if p.key not in (METADATA_POOLING, METADATA_NORMALIZE)
    ]
    del model.metadata_props[:]
    model.metadata_props.extend(kept_meta)
    if sep is not None:
        restore_sep(model, sep, limit)
    onnx.checker.check_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    return len(model.graph.node)


def sep_token_id(tokenizer: dict[str, Any]) -> int | None:
    """The id of the token the tokenizer's post-processor ends a single text with."""
    post = tokenizer.get("post_processor") or {}
    if post.get("type") == "BertProcessing":
        return int(post["sep"][1])
    if post.get("type") == "TemplateProcessing":
        single = post.get("single") or []
        last = single[-1].get("SpecialToken") if single else None
        if last is not None:
            ids = post.get("special_tokens", {}).get(last["id"], {}).get("ids") or []
            return int(ids[0]) if ids else None
    return None


def restore_sep(model: Any, sep: int, limit: int) -> None:
    """Put ``sep`` back as the last token of every row of ``limit`` tokens (those a tokenizer that
    truncates after adding special tokens has cut), before the graph reads ``input_ids``."""
    from onnx import TensorProto, helper

    graph = model.graph
    fixed = "web/input_ids"
    for node in graph.node:
        node.input[:] = [fixed if name == "input_ids" else name for name in node.input]

    def const(name: str, value: int) -> Any:
        return helper.make_node(
            "Constant",
            [],
            [name],
            value=helper.make_tensor(name, TensorProto.INT64, [], [value]),
            name=name,
        )

    new = [
        const("web/one", 1),
        const("web/zero", 0),
        const("web/limit", limit),
        const("web/sep", sep),
        helper.make_node(
            "Constant",
            [],
            ["web/axis1"],
            name="web/axis1",
            value=helper.make_tensor("web/axis1", TensorProto.INT64, [1], [1]),
        ),
        # Each row's length, and whether the row fills the limit.
        helper.make_node(
            "ReduceSum",
            ["attention_mask", "web/axis1"],
            ["web/lengths"],
            keepdims=1,
            name="web/lengths",
        ),
        helper.make_node("Sub", ["web/lengths", "web/one"], ["web/last"], name="web/last"),
        helper.make_node("Equal", ["web/lengths", "web/limit"], ["web/full"], name="web/full"),
        # Positions 0..T-1, and the last real token of each full row.
        helper.make_node("Shape", ["input_ids"], ["web/shape"], name="web/shape"),
        helper.make_node(
            "Gather", ["web/shape", "web/one"], ["web/width"], axis=0, name="web/width"
        ),
        helper.make_node(
            "Range", ["web/zero", "web/width", "web/one"], ["web/positions"], name="web/positions"
        ),
        helper.make_node(
            "Equal", ["web/positions", "web/last"], ["web/at_last"], name="web/at_last"
        ),
        helper.make_node("And", ["web/at_last", "web/full"], ["web/cut"], name="web/cut"),
        helper.make_node("Where", ["web/cut", "web/sep", "input_ids"], [fixed], name="web/where"),
    ]
    nodes = new + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)


# CJK ideographs outside the Basic Multilingual Plane that BERT's normalizer puts spaces around
# (its Chinese-character ranges past U+FFFF). transformers.js reads a text by UTF-16 code units
# there, so it never sees them as ideographs and reads a run of them as one word.
ASTRAL_CJK = (
    "[\U00020000-\U0002a6df\U0002a700-\U0002b73f\U0002b740-\U0002b81f"
    "\U0002b820-\U0002ceaf\U0002f800-\U0002fa1f]"
)


def same_in_javascript(tokenizer: dict[str, Any]) -> None:
    """Make ``tokenizer`` (a tokenizer.json definition) give in transformers.js the tokens it gives
    in Python, where the two read text differently; Python's tokens do not change:

    - JavaScript lowercases a capital sigma (U+03A3) at a word's end to the final sigma (U+03C2),
      the Rust tokenizer always to the small sigma (U+03C3; a Greek text in capitals took 23
      tokens against 20): a Replace of the capital by the small sigma before the normalizer
      lowercases, a no-op in Python;
    - ideographs past U+FFFF are isolated by a Split before BERT's pre-tokenizer, as Python's
      normalizer already does by putting spaces around them.
    """
    normalizer = tokenizer.get("normalizer") or {}
    bert = normalizer if normalizer.get("type") == "BertNormalizer" else None
    if bert is not None and bert.get("lowercase"):
        sigma = {"type": "Replace", "pattern": {"String": "\u03a3"}, "content": "\u03c3"}
        tokenizer["normalizer"] = {"type": "Sequence", "normalizers": [sigma, normalizer]}
    if bert is not None and bert.get("handle_chinese_chars") and tokenizer.get("pre_tokenizer"):
        split = {
            "type": "Split",
            "pattern": {"Regex": ASTRAL_CJK},
            "behavior": "Isolated",
            "invert": False,
        }
        tokenizer["pre_tokenizer"] = {
            "type": "Sequence",
            "pretokenizers": [split, tokenizer["pre_tokenizer"]],
        }


def tokenizer_files(output: Path, web: Path, config: ModelConfig) -> dict[str, Any]:
    """The tokenizer with the model's own length limit, and the configs transformers.js reads;
    returns the tokenizer's definition."""
    limit = config.max_seq_length
    tokenizer: dict[str, Any] = json.loads((output / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer["truncation"] = {
        "direction": "Right",
        "max_length": limit,
        "strategy": "LongestFirst",
        "stride": 0,
    }
    tokenizer["padding"] = None  # the caller pads its batch
    same_in_javascript(tokenizer)
    (web / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), "utf-8")
    settings: dict[str, Any] = {}
    if (output / "tokenizer_config.json").is_file():
        settings = json.loads((output / "tokenizer_config.json").read_text(encoding="utf-8"))
    settings["model_max_length"] = limit
    (web / "tokenizer_config.json").write_text(json.dumps(settings, indent=2), "utf-8")
    for name in TOKENIZER_FILES + POOLING_FILES:
        if (output / name).is_file():
            shutil.copy2(output / name, web / name)
    pooling = output / "1_Pooling"
    if pooling.is_dir():
        shutil.copytree(pooling, web / "1_Pooling", dirs_exist_ok=True)
    return tokenizer


def write_web(
    output: Path, graphs: dict[str, dict[str, Any]], config: ModelConfig
) -> dict[str, dict[str, Any]]:
    """``output/web``: a web graph for each of the fp32 and int8 graphs written, and the
    tokenizer files; returns their manifest entries (by variant)."""
    web = output / WEB
    web.mkdir(exist_ok=True)
    sep = sep_token_id(tokenizer_files(output, web, config))
    entries: dict[str, dict[str, Any]] = {}
    for variant in ("fp32", "int8"):
        if variant not in graphs:
            continue
        name = exported_graph(variant)  # as the export names it: transformers.js reads the same
        assert config.dimension is not None
        nodes = hidden_state_graph(
            output / graphs[variant]["file"],
            web / "onnx" / name,
            config.dimension,
            sep=sep,
            limit=config.max_seq_length,
        )
        entries[variant] = {
            "file": f"{WEB}/onnx/{name}",
            "from": graphs[variant]["file"],
            "output": HIDDEN,
            "nodes": nodes,
            "transformers_js_dtype": variant,
            "sep_restored_at": config.max_seq_length if sep is not None else None,
        }
        print(f"  web {variant}: {WEB}/onnx/{name} ({nodes} nodes, pooled in JavaScript)")
    default_dtype(web / "config.json", "int8" if "int8" in entries else "fp32")
    return entries


def default_dtype(config_file: Path, dtype: str) -> None:
    """Name the graph transformers.js loads in a browser when the caller names no ``dtype``: its
    own default there (WASM) is ``q8``, a file this folder does not have. Node.js's default,
    fp32, stays."""
    config: dict[str, Any] = json.loads(config_file.read_text(encoding="utf-8"))
    own = config.setdefault("transformers.js_config", {})
    own.setdefault("device_config", {})["wasm"] = {"dtype": dtype}
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
