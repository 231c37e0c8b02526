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
