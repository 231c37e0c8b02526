"""Export stage 1: torch model -> ONNX graph with pooling (and normalization) inside, then fused.

Why this way (measured; the README has the figures):
- transformers' *eager* attention and the TorchScript exporter (``dynamo=False``) give a graph in
  which ONNX Runtime's BERT optimizer fuses Attention and EmbedLayerNormalization; the sdpa path
  and the dynamo exporter do not.
- pooling and normalization inside the graph mean only (batch, dim) leaves it: on an H100 that
  alone made the fp16 graph 1.9x faster than returning the hidden states.
- the wrapper module must be in eval mode: ``torch.onnx.export`` restores the wrapper's training
  flag on every submodule afterwards, and a fresh ``nn.Module`` is in training mode, which turns
  dropout on in the torch model used as the reference later.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT = "sentence_embedding"


def _pooling_module(mode: str, normalize: bool) -> Any:
    import torch

    class Pool(torch.nn.Module):
        """sentence-transformers' Pooling (+ Normalize), written out for the exporter."""

        def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            if mode == "cls":
                pooled = hidden[:, 0]
            elif mode == "max":
                pooled = torch.where(weights > 0, hidden, torch.full_like(hidden, -1e9)).amax(1)
            else:
                summed = (hidden * weights).sum(1)
                counts = weights.sum(1).clamp(min=1e-9)
                pooled = summed / (counts.sqrt() if mode == "mean_sqrt_len" else counts)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1, eps=1e-12)
            return pooled

    return Pool()


def export_pooled(model_dir: Path, out_path: Path, *, pooling: str, normalize: bool) -> None:
    """Export the model of ``model_dir`` to ``out_path``: ids in, one pooled vector per text out."""
    _export(model_dir, out_path, _pooling_module(pooling, normalize), OUTPUT)


def export_hidden_states(model_dir: Path, out_path: Path) -> None:
    """Export a plain graph returning ``last_hidden_state`` (batch, seq, dim), pooled elsewhere.

    This is the form of most published ONNX exports (the GIST author's among them); gist-onnx
    loads it too, and the tests and benchmarks use it to compare the two forms.
    """
    _export(model_dir, out_path, None, "last_hidden_state")


def _export(model_dir: Path, out_path: Path, pool: Any, output: str) -> None:
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")

    class Embedder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert
            self.pool = pool

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            hidden: torch.Tensor = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            if self.pool is None:
                return hidden
            pooled: torch.Tensor = self.pool(hidden, attention_mask)
            return pooled

    module = Embedder().eval()
    # A padded example, so the exporter traces the masking path with batch and length dynamic.
    ids = torch.tensor([[101, 7592, 2088, 999, 102], [101, 7592, 102, 0, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    dynamic[output] = {0: "batch"} if pool is not None else {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(
            module,
            (ids, mask, types),
            str(out_path),
            dynamo=False,
            input_names=list(INPUTS),
            output_names=[output],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            do_constant_folding=True,
        )


def record_pooling(path: Path, *, pooling: str, normalize: bool) -> None:
    """Record in the graph's ONNX metadata how it pools, so that the graph itself says so and
    the encoder can refuse configs that ask for something else, with or without a manifest."""
    import onnx

    from ..session import METADATA_NORMALIZE, METADATA_POOLING

    model = onnx.load(str(path))
    recorded = {METADATA_POOLING: pooling, METADATA_NORMALIZE: "true" if normalize else "false"}
    kept = [p for p in model.metadata_props if p.key not in recorded]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in recorded.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def externalize(path: Path) -> Path:
    """Rewrite ``path`` with its weights in ``<name>.data`` beside it; returns the data file.

    Measured on 2 cores: ONNX Runtime then maps the weights instead of parsing them out of the
    protobuf, which cut session creation from 0.19 s to 0.07 s and peak memory from 186 MiB to
    106 MiB for the fp32 graph, at the same speed (the int8 graph loaded faster and smaller too;
    benchmarks/results/RESULTS.md has the current figures).
    """
    import onnx

    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)
    model = onnx.load(str(path))
    onnx.save(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data.name,
        size_threshold=1024,
    )
    return data


def consumers_of(graph: Any) -> dict[str, list[Any]]:
    """Every tensor name of ``graph`` (an ONNX GraphProto) -> the nodes that read it."""
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def drop_unused_initializers(graph: Any) -> None:
    """Remove the initializers no node of ``graph`` (an ONNX GraphProto) reads."""
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def node_count(path: Path) -> int:
    """The nodes of the graph at ``path`` (its weights not read)."""
    import onnx

    return len(onnx.load(str(path), load_external_data=False).graph.node)


def preoptimize_for_cpu(path: Path) -> int:
    """Rewrite a CPU-only graph (the int8 one) with ONNX Runtime's extended-level rewrites applied,
    so that sessions do not redo them at every load; returns the node count after.

    Extended-level rewrites only fuse into ONNX Runtime's contrib operators (no layout or
    instruction-set specific packing, which is why the session still runs its own passes at
    load). Measured on 2 cores: the per-row int8 graph goes from 754 to ~490 nodes, session
    creation from ~60 ms to ~35 ms, cold start from 0.24-0.25 s to 0.21-0.22 s, with identical
    vectors, speed and peak memory.
    """
    import shutil
    import tempfile

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / path.name
        options.optimized_model_filepath = str(optimized)
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        shutil.move(optimized, path)
    return node_count(path)


def sequence_major(path: Path, *, num_heads: int, hidden_size: int) -> int:
    """Rewrite a CPU-only graph (the int8 one, after :func:`preoptimize_for_cpu`) so that its
    activations are (sequence, batch, hidden) instead of (batch, sequence, hidden); returns the
    number of attention layers rewritten (0: the graph is left as it was).

    In that order ONNX Runtime's ``FusedMatMul`` takes each head's queries, keys and values
    straight from the projections' output (``transBatchA``/``transBatchB`` read the
    (sequence, batch, heads, head_dim) tensor as (batch, heads, sequence, head_dim)), so three of
    the four Transposes of each layer go; the attention output's takes them back to
    (sequence, batch, heads x head_dim). Everything else works on the last axis and does not
    care. The token ids are transposed on the way in, the position embeddings broadcast over the
    batch, the mask and pooling still see (batch, sequence). The same arithmetic in the same
    order: the vectors are identical. Measured on 2 cores (int8, 5 interleaved rounds): passages
    +5%, one query -4%, sentences within noise; 51 nodes fewer.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    nodes = list(graph.node)
    producer = {out: node for node in nodes for out in node.output}
    consumers = consumers_of(graph)
    layers = _attention_layers(nodes, producer, consumers)
    last_norm = [n for n in nodes if n.op_type == "LayerNormalization"]
    positions = [
        n
        for n in nodes
        if n.op_type == "Gather" and "position_embeddings" in n.input[0] and n.input[1] in producer
    ]
    if not layers or len(positions) != 1 or not last_norm:
        return 0
    if last_norm[-1].output[0] in {o.name for o in graph.output}:
        return 0  # a graph that returns the hidden states: not handled, left as it was
    heads = numpy_helper.from_array(
        np.array([0, 0, num_heads, hidden_size // num_heads], np.int64), "seqmajor/heads"
    )
    merged = numpy_helper.from_array(np.array([0, 0, hidden_size], np.int64), "seqmajor/merged")
    graph.initializer.extend([heads, merged])
    _attention_sequence_major(graph, layers, producer, heads.name, merged.name)
    _transpose_inputs(graph, consumers, positions[0])
    _transpose_output(graph, consumers, last_norm[-1])
    _shapes_batch_first(graph)
    _drop_dead_nodes(graph)
    drop_unused_initializers(graph)  # else ONNX Runtime warns of each at every load
    del graph.value_info[:]  # shapes recorded for the old order
    onnx.save(model, str(path))
    return len(layers)


def _perm(node: Any) -> list[int] | None:
    """A Transpose's permutation; None for anything else."""
    if node is None or node.op_type != "Transpose":
        return None
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), None)


def _set_attribute(node: Any, key: str, value: Any) -> None:
    from onnx import helper

    kept = [a for a in node.attribute if a.name != key]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute(key, value)])


def _insert_after(graph: Any, node: Any, new: Any) -> None:
    graph.node.insert(list(graph.node).index(node) + 1, new)


def _attention_layers(
    nodes: list[Any], producer: dict[str, Any], consumers: dict[str, list[Any]]
) -> list[tuple[Any, ...]]:
    """Each attention layer's nodes (scores, the three head Transposes, context, the output's
    Transpose and merge Reshape), or [] if any layer is not the pattern this rewrite knows:
    FusedMatMul(T(Reshape(q)), T(Reshape(k))) -> Add(mask) -> Softmax -> MatMul(., T(Reshape(v)))
    -> Transpose -> Reshape, with the exporter's head permutations."""
    import onnx

    def ints(node: Any) -> dict[str, int]:
        return {a.name: a.i for a in node.attribute if a.type == onnx.AttributeProto.INT}

    def only_consumer(name: str) -> Any:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 else None

    layers = []
    for scores in nodes:
        if scores.op_type != "FusedMatMul" or scores.domain != "com.microsoft":
            continue
        t_q: Any = producer.get(scores.input[0])
        t_k: Any = producer.get(scores.input[1])
        if _perm(t_q) is None or _perm(t_k) is None:
            continue  # not attention's scores
        masked = only_consumer(scores.output[0])
        softmax = masked and only_consumer(masked.output[0])
        context = softmax and only_consumer(softmax.output[0])
        if not (masked and softmax and context) or context.op_type != "MatMul":
            return []
        t_v: Any = producer.get(context.input[1])
        t_out = only_consumer(context.output[0])
        merge = t_out and only_consumer(t_out.output[0])
        if (
            any(ints(scores).get(k, 0) for k in ("transA", "transB", "transBatchA", "transBatchB"))
            or (_perm(t_q), _perm(t_k), _perm(t_v), _perm(t_out))
            != ([0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3], [0, 2, 1, 3])
            or masked.op_type != "Add"
            or softmax.op_type != "Softmax"
            or merge is None
            or merge.op_type != "Reshape"
            or any(
                producer.get(t.input[0]) is None or producer[t.input[0]].op_type != "Reshape"
                for t in (t_q, t_k, t_v)
            )
        ):
            return []
        layers.append((scores, t_q, t_k, t_v, context, t_out, merge))
    return layers


def _attention_sequence_major(
    graph: Any, layers: list[tuple[Any, ...]], producer: dict[str, Any], heads: str, merged: str
) -> None:
    """Each layer's heads read straight from the (seq, batch, heads, head_dim) projections by
    FusedMatMul's batch transposes; three Transposes a layer dropped."""
    from onnx import helper

    dropped = []
    for scores, t_q, t_k, t_v, context, t_out, merge in layers:
        for t in (t_q, t_k, t_v):
            producer[t.input[0]].input[1] = heads  # (seq, batch, heads, head_dim)
            dropped.append(t)
        scores.input[0], scores.input[1] = t_q.input[0], t_k.input[0]
        _set_attribute(scores, "transBatchA", 1)
        _set_attribute(scores, "transBatchB", 1)
        _set_attribute(scores, "transB", 1)
        fused = helper.make_node(
            "FusedMatMul",
            [context.input[0], t_v.input[0]],
            list(context.output),
            name=(context.name or context.output[0]) + "/seqmajor",
            domain="com.microsoft",
            transBatchB=1,
            alpha=1.0,
        )
        graph.node.insert(list(graph.node).index(context), fused)
        graph.node.remove(context)
        _set_attribute(t_out, "perm", [2, 0, 1, 3])
        merge.input[1] = merged
    for node in dropped:
        graph.node.remove(node)


def _transpose_inputs(graph: Any, consumers: dict[str, list[Any]], position: Any) -> None:
    """In: token ids (and type ids) as (seq, batch) for the embedding lookups; positions
    (1, seq, hidden) -> (seq, 1, hidden). Shape and mask nodes keep reading the inputs."""
    from onnx import helper

    front = []
    for name in ("input_ids", "token_type_ids"):
        transposed = f"seqmajor/{name}"
        lookups = [
            n for n in consumers.get(name, []) if n.op_type == "Gather" and n.input[1] == name
        ]
        for node in lookups:
            node.input[1] = transposed
        if lookups:
            front.append(helper.make_node("Transpose", [name], [transposed], perm=[1, 0]))
    for node in reversed(front):
        graph.node.insert(0, node)
    for node in consumers.get(position.output[0], []):
        node.input[:] = ["seqmajor/positions" if x == position.output[0] else x for x in node.input]
    _insert_after(
        graph,
        position,
        helper.make_node("Transpose", [position.output[0]], ["seqmajor/positions"], perm=[1, 0, 2]),
    )


def _transpose_output(graph: Any, consumers: dict[str, list[Any]], last_norm: Any) -> None:
    """Out: the last layer norm's output back to (batch, seq, hidden) for pooling."""
    from onnx import helper

    hidden = last_norm.output[0]
    back = "seqmajor/hidden"
    for node in consumers.get(hidden, []):
        node.input[:] = [back if x == hidden else x for x in node.input]
    _insert_after(graph, last_norm, helper.make_node("Transpose", [hidden], [back], perm=[1, 0, 2]))


def _shapes_batch_first(graph: Any) -> None:
    """Any other Shape of a (seq, batch, hidden) activation still reports (batch, seq, hidden)."""
    from onnx import helper, numpy_helper

    activations = {n.output[0] for n in graph.node if n.op_type == "LayerNormalization"}
    batch_first = numpy_helper.from_array(np.array([1, 0, 2], np.int64), "seqmajor/batch_first")
    graph.initializer.append(batch_first)  # dropped later if no Shape needs it
    for node in list(graph.node):
        if node.op_type == "Shape" and node.input[0] in activations:
            swapped = node.output[0]
            node.output[0] = swapped + "/seqmajor"
            _insert_after(
                graph,
                node,
                helper.make_node("Gather", [node.output[0], batch_first.name], [swapped], axis=0),
            )


def _drop_dead_nodes(graph: Any) -> None:
    """Remove the nodes nothing reads any more (the shape arithmetic constant reshapes
    replaced), until none is left."""
    while True:
        used = {x for n in graph.node for x in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def fuse(in_path: Path, out_path: Path, *, num_heads: int, hidden_size: int) -> dict[str, int]:
    """Apply ONNX Runtime's BERT fusions offline; returns the fused operator counts.

    ``opt_level=0`` keeps ONNX Runtime's own (device-specific) graph rewrites out of the saved
    file, so one fused graph runs on CPU and CUDA alike; sessions still apply them at load.
    The residual additions and layer norms are left unfused: ONNX Runtime's CPU
    ``SkipLayerNormalization`` is slower than the three nodes it replaces (fp32 +12-13% without
    it, see ``gist_onnx.session.CPU_DISABLED_OPTIMIZERS``); a CUDA session fuses them at load.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_skip_layer_norm = False
    model = optimize_model(
        str(in_path),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        optimization_options=options,
        opt_level=0,
        use_gpu=False,
    )
    model.save_model_to_file(str(out_path))
    stats = model.get_fused_operator_statistics()
    return {k: int(v) for k, v in stats.items() if v}


def to_fp16(in_path: Path, out_path: Path) -> None:
    """Convert a fused fp32 graph to fp16 weights and compute, keeping int64 ids in and fp32 out."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(in_path)))
    # Pooling sums up to max_seq_length token vectors and normalization squares them: kept in
    # fp32 (everything after the last layer norm), they cost nothing and stay clear of fp16's range.
    model.convert_float_to_float16(keep_io_types=True, node_block_list=sorted(_pooling_tail(model)))
    model.save_model_to_file(str(out_path))


def _pooling_tail(model: Any) -> set[str]:
    """Names of the nodes downstream of the last layer normalization: the pooling tail."""
    nodes = list(model.model.graph.node)
    norms = [n for n in nodes if n.op_type in ("SkipLayerNormalization", "LayerNormalization")]
    if not norms:
        return set()
    frontier = set(norms[-1].output)
    tail: set[str] = set()
    for node in nodes:  # nodes are topologically sorted
        if any(name in frontier for name in node.input):
            tail.add(node.name)
            frontier.update(node.output)
    return tail
