"""Export stage 2: the int8 graph.

The recipe (measured, see the README's "int8" section for every figure):

- weights: int8, symmetric, one scale per output channel, computed once at export;
- activations: int8 with **one scale per token row**, computed in the graph at run time
  (``scale = max|row| / 127``), fed to ONNX Runtime's ``MatMulIntegerToFloat`` (u8 x s8: VNNI
  on x86; the weights' per-column scale applied in the same kernel), then scaled per row.

ONNX Runtime's ``quantize_dynamic`` instead scales the activations per *tensor*: one outlier
token (or the padding) sets the scale of the whole batch, which cost up to 0.035 of cosine and
made a text's vector depend on the batch it was in. Static quantization fixes the scales at
calibration time and lost more (worst cosine 0.76 per-tensor). A per-row scale depends on that
row only, so a text's vector is the same in any batch, and outlier tokens no longer flatten the
others.

- the word-embedding table: int8 with one scale per row (per token), dequantized after the
  Gather, which cuts the file from 90 MB to about 23 MB.

Attention's activation x activation products, softmax, layer norms and pooling stay in fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def activation_ranges(in_path: Path, batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Largest |value| per channel of every weight MatMul's input, over calibration batches."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(in_path))
    inits = {i.name for i in model.graph.initializer}
    acts = sorted(
        {n.input[0] for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits}
    )
    known = {o.name for o in model.graph.output}
    for name in acts:
        if name not in known:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ranges: dict[str, np.ndarray] = {}
    for feed in batches:
        mask = feed["attention_mask"].astype(bool)
        for name, value in zip(acts, session.run(acts, feed), strict=True):
            rows = value[mask]  # real tokens only: padding never reaches a real text's vector
            peak = np.abs(rows).max(axis=0)
            ranges[name] = np.maximum(ranges[name], peak) if name in ranges else peak
    return ranges


def quantize_rowwise(
    in_path: Path,
    out_path: Path,
    *,
    exclude: tuple[str, ...] = (),
    ranges: dict[str, np.ndarray] | None = None,
    alpha: float = 0.5,
) -> dict[str, int]:
    """Write the int8 graph of the (unfused) fp32 graph at ``in_path``; returns what was changed.

    ``exclude`` holds substrings of MatMul node names to keep in fp32. With ``ranges`` (from
    :func:`activation_ranges`), each activation's outlier channels are scaled down and the
    weights' rows up by the same factor (SmoothQuant, strength ``alpha``), so a row's int8 levels
    are not spent on a few huge channels.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(in_path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}

    new_nodes: list[Any] = []
    new_inits: list[Any] = []
    row_quant: dict[str, tuple[str, str]] = {}  # activation -> (uint8 tensor, row scale)
    counts = {"matmul_int8": 0, "matmul_fp32": 0, "gather_int8": 0}

    def const(name: str, array: np.ndarray) -> str:
        new_inits.append(numpy_helper.from_array(array, name))
        return name

    zero_point = const("rowq/zero_point_u8", np.array(128, dtype=np.uint8))
    one = const("rowq/one", np.array(1.0, dtype=np.float32))
    eps = const("rowq/eps", np.array(1e-8, dtype=np.float32))
    levels = const("rowq/levels", np.array(127.0, dtype=np.float32))

    # One smoothing factor per activation, shared by every MatMul that reads it (Q, K and V).
    weights_of: dict[str, list[np.ndarray]] = {}
    for node in graph.node:
        weight_matmul = node.op_type == "MatMul" and len(node.input) > 1 and node.input[1] in inits
        if weight_matmul and not any(s in node.name for s in exclude):
            weights_of.setdefault(node.input[0], []).append(
                np.abs(numpy_helper.to_array(inits[node.input[1]])).max(axis=1)
            )
    smooth: dict[str, np.ndarray] = {}
    for act, w_peaks in weights_of.items():
        if ranges is not None and act in ranges:
            w_peak = np.maximum(np.max(w_peaks, axis=0), 1e-5)
            a_peak = np.maximum(ranges[act], 1e-5)
            smooth[act] = (a_peak**alpha / w_peak ** (1 - alpha)).astype(np.float32)

    def quantize_rows(act: str) -> tuple[str, str]:
        if act in row_quant:
            return row_quant[act]
        p = f"rowq/{len(row_quant)}"
        source = act
        if act in smooth:
            inv = const(f"{p}/smooth_inv", (1.0 / smooth[act]).astype(np.float32))
            new_nodes.append(helper.make_node("Mul", [act, inv], [f"{p}/smoothed"]))
            source = f"{p}/smoothed"
        new_nodes.extend(
            [
                helper.make_node("Abs", [source], [f"{p}/abs"]),
                helper.make_node("ReduceMax", [f"{p}/abs"], [f"{p}/amax"], axes=[-1], keepdims=1),
                helper.make_node("Max", [f"{p}/amax", eps], [f"{p}/amax_eps"]),
                helper.make_node("Div", [f"{p}/amax_eps", levels], [f"{p}/scale"]),
                # Multiplying by the reciprocal: one small Div per row, then a cheap Mul.
                helper.make_node("Div", [levels, f"{p}/amax_eps"], [f"{p}/inv_scale"]),
                helper.make_node("Mul", [source, f"{p}/inv_scale"], [f"{p}/scaled"]),
                # round(scaled) + 128 as uint8 in one kernel (|scaled| <= 127: no saturation).
                helper.make_node("QuantizeLinear", [f"{p}/scaled", one, zero_point], [f"{p}/q"]),
            ]
        )
        row_quant[act] = (f"{p}/q", f"{p}/scale")
        return row_quant[act]

    for node in graph.node:
        weight = inits.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type == "MatMul" and weight is not None and len(weight.dims) == 2:
            if any(s in node.name for s in exclude):
                counts["matmul_fp32"] += 1
                new_nodes.append(node)
                continue
            w = numpy_helper.to_array(weight).astype(np.float32)
            if node.input[0] in smooth:
                w = w * smooth[node.input[0]][:, None]
            w_scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0
            w_q = np.clip(np.rint(w / w_scale), -127, 127).astype(np.int8)
            p = f"{node.name or node.output[0]}/rowq"
            q, scale = quantize_rows(node.input[0])
            wq_name = const(f"{p}/w_int8", w_q)
            ws_name = const(f"{p}/w_scale", w_scale.astype(np.float32))
            new_nodes.extend(
                [
                    # int8 product, converted and scaled per column in one kernel (ONNX
                    # Runtime's contrib op), then scaled per row.
                    helper.make_node(
                        "MatMulIntegerToFloat",
                        [q, wq_name, one, ws_name, zero_point],
                        [f"{p}/col_scaled"],
                        domain="com.microsoft",
                    ),
                    helper.make_node("Mul", [f"{p}/col_scaled", scale], [node.output[0]]),
                ]
            )
            counts["matmul_int8"] += 1
            continue
        table = inits.get(node.input[0]) if node.op_type == "Gather" else None
        if table is not None and len(table.dims) == 2 and table.dims[0] >= 1000:
            t = numpy_helper.to_array(table).astype(np.float32)
            t_scale = (np.maximum(np.abs(t).max(axis=1, keepdims=True), 1e-12) / 127.0).astype(
                np.float32
            )
            t_q = np.clip(np.rint(t / t_scale), -127, 127).astype(np.int8)
            p = f"{node.name or node.output[0]}/rowq"
            tq_name = const(f"{p}/table_int8", t_q)
            ts_name = const(f"{p}/table_scale", t_scale)
            new_nodes.extend(
                [
                    helper.make_node("Gather", [tq_name, node.input[1]], [f"{p}/rows"], axis=0),
                    helper.make_node("Gather", [ts_name, node.input[1]], [f"{p}/scales"], axis=0),
                    helper.make_node("Cast", [f"{p}/rows"], [f"{p}/rows_f"], to=TensorProto.FLOAT),
                    helper.make_node("Mul", [f"{p}/rows_f", f"{p}/scales"], [node.output[0]]),
                ]
            )
            counts["gather_int8"] += 1
            continue
        new_nodes.append(node)

    # Topological order: each row-quantization block was appended right before its first user.
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + new_inits)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(out_path))
    return counts
