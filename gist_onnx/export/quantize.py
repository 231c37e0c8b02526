"""Export stage 2: the int8 graph.

The recipe (measured, see the README's "int8" section for every figure):

- weights: int8, symmetric, one scale per output channel, computed once at export;
- activations: int8 with **one scale per token row**, computed in the graph at run time
  (``scale = max|row| / 127``), fed to ONNX Runtime's ``MatMulIntegerToFloat`` (u8 x u8, the
  weights' int8 levels stored around 128: exact on every CPU, see below; the weights'
  per-column scale applied in the same kernel), then scaled per row;
- except where a product reads a layer norm's output (Q, K, V and the FFN up-projection): there
  one **static** scale and zero point, spanning the calibrated lowest to highest value in 256
  levels, so that ``MatMulIntegerToFloat`` returns the product fully scaled, its bias added in
  the same kernel, and the per-row passes go (the row maximum, two multiplications, the bias
  addition);
- the word-embedding table: int8 with one scale per row (per token), dequantized after the
  Gather, which cuts the file from 90 MB to about 23 MB.

ONNX Runtime's ``quantize_dynamic`` instead scales the activations per *tensor*: one outlier
token (or the padding) sets the scale of the whole batch, which cost up to 0.035 of cosine and
made a text's vector depend on the batch it was in. Static scales on every product lost more
(worst cosine 0.76). A per-row scale depends on that row only, and a static one on nothing at
run time, so a text's vector is the same in any batch. Static scales suit a layer norm's output:
it is normalized per token, and its largest values come from the same token ([CLS]) in every
text; values beyond the calibrated bounds saturate, and texts the calibration never saw keep
their quality (benchmarks/results/INT8.md). The attention output (worst cosine 0.986 static) and the
GELU output (its bounds vary from text to text; mean cosine lower static) keep a scale per row.

Attention's activation x activation products, softmax, layer norms and pooling stay in fp32.

An exact rewrite of the fp32 graph comes first (:func:`fold_attention_biases`): the key's bias
only shifts each row of attention scores by a constant, which softmax ignores, and the value's bias
comes out of attention unchanged (softmax rows sum to 1), so it folds into the output projection's
bias.

Where one input channel carries a huge value, smoothing is the wrong tool. In the FFN
down-projections of the stand-in model's first four layers, the largest input channel (a GELU
output of 14-25 on one token of a text, against a median channel peak of 1.5) also has the
largest weights (3.5-8, against a median row peak of 0.15): that one weight row set the int8
scale of its output column. ``quantize_rowwise(outliers=...)`` computes such channels in fp32 (a
gather and a rank-1 product) and zeroes their int8 weight rows; the activation is then not
smoothed. The export does this for one channel of every FFN down-projection: faster than
smoothing them or than keeping the first layer's in fp32 whole, and closer to torch on Japanese
and Korean paragraphs (benchmarks/results/INT8.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .graph import consumers_of, drop_unused_initializers
from .rowwise import ROW_EPS, Bounds


def activation_bounds(in_path: Path, batches: list[dict[str, np.ndarray]]) -> Bounds:
    """Lowest and highest value per channel of every weight MatMul's input, over calibration
    batches (real tokens only)."""
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
    bounds: Bounds = {}
    for feed in batches:
        mask = feed["attention_mask"].astype(bool)
        for name, value in zip(acts, session.run(acts, feed), strict=True):
            rows = value[mask]  # real tokens only: padding never reaches a real text's vector
            low, high = rows.min(axis=0), rows.max(axis=0)
            if name in bounds:
                low, high = np.minimum(bounds[name][0], low), np.maximum(bounds[name][1], high)
            bounds[name] = (low, high)
    return bounds


def peaks(bounds: Bounds) -> dict[str, np.ndarray]:
    """Largest |value| per channel, from :func:`activation_bounds`."""
    return {name: np.maximum(-low, high) for name, (low, high) in bounds.items()}


def fold_attention_biases(in_path: Path, out_path: Path) -> int:
    """Rewrite the fp32 graph at ``in_path`` without the key and value biases; returns the number
    of attention blocks rewritten (0 where the pattern is not found: the graph is written as is).

    score(i, j) = (q_i)(k_j + b_k) = q_i k_j + q_i b_k: the second term is the same for every j,
    and softmax over j ignores it. sum_j p_ij (v_j + b_v) = sum_j p_ij v_j + b_v, since each row
    of p sums to 1; b_v then goes through the output projection W_o into its bias: b_o + b_v W_o.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(in_path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers = consumers_of(graph)

    def single_consumer(name: str) -> Any:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 else None

    def bias_add_above(name: str) -> Any:
        """From ``name`` up through Reshape/Transpose to the Add that puts a constant bias on it,
        if that Add feeds nothing else (its bias is about to be dropped for every reader)."""
        node = producer.get(name)
        while node is not None and node.op_type in ("Reshape", "Transpose"):
            if single_consumer(node.output[0]) is None:
                return None
            node = producer.get(node.input[0])
        if node is None or node.op_type != "Add" or single_consumer(node.output[0]) is None:
            return None
        return node if sum(i in inits for i in node.input) == 1 else None

    def bias_of(add: Any) -> tuple[str, str]:
        bias = next(i for i in add.input if i in inits)
        return bias, next(i for i in add.input if i != bias)

    bypass: dict[str, str] = {}  # output of a dropped bias Add -> its un-biased input
    folded = 0
    for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
        scores = producer.get(softmax.input[0])
        while scores is not None and scores.op_type in ("Add", "Mul", "Div"):
            scores = producer.get(scores.input[0])
        mix = single_consumer(softmax.output[0])
        if scores is None or scores.op_type != "MatMul" or mix is None or mix.op_type != "MatMul":
            continue
        key_add = bias_add_above(scores.input[1])
        value_add = bias_add_above(mix.input[1])
        out = single_consumer(mix.output[0])
        while out is not None and out.op_type in ("Reshape", "Transpose"):
            out = single_consumer(out.output[0])
        if key_add is None or value_add is None or out is None or out.op_type != "MatMul":
            continue
        out_add = single_consumer(out.output[0])
        if out.input[1] not in inits or out_add is None or out_add.op_type != "Add":
            continue
        if not any(i in inits for i in out_add.input):
            continue
        b_v, v = bias_of(value_add)
        _, k = bias_of(key_add)
        b_o, _ = bias_of(out_add)
        w_o = numpy_helper.to_array(inits[out.input[1]]).astype(np.float64)
        merged = numpy_helper.to_array(inits[b_o]).astype(np.float64)
        merged = merged + numpy_helper.to_array(inits[b_v]).astype(np.float64) @ w_o
        inits[b_o].CopyFrom(numpy_helper.from_array(merged.astype(np.float32), b_o))
        bypass[key_add.output[0]] = k
        bypass[value_add.output[0]] = v
        folded += 1
    kept_nodes = [n for n in graph.node if n.output[0] not in bypass]
    for node in kept_nodes:
        for index, name in enumerate(node.input):
            if name in bypass:
                node.input[index] = bypass[name]
    del graph.node[:]
    graph.node.extend(kept_nodes)
    drop_unused_initializers(graph)
    onnx.save(model, str(out_path))
    return folded


# The floor under a row's max|x| (an all-zero row), which skip_abs_after_gelu finds by name.
# GELU(x) = x * Phi(x) is never below -0.16997 (at x = -0.7518): 0.17 bounds its negative side.
_GELU_FLOOR = 0.17
_EXACT_GELUS = ("BiasGelu", "Gelu")  # erf GELU; the tanh approximation dips a hair lower


def skip_abs_after_gelu(path: Path) -> int:
    """In a graph after :func:`gist_onnx.export.graph.preoptimize_for_cpu`, take each FFN
    down-projection's row maximum from the GELU output itself instead of its absolute values;
    returns the rows' quantizations rewritten (0: none, the file is left as it was).

    A GELU output is >= -0.17, so ``max(max(row), 0.17)`` bounds ``max|row|``, and equals it
    whenever the row's largest value is at least 0.17 (every row of a real text: 2,219 texts gave
    identical vectors): one pass over the (tokens, 1,536) tensor fewer per layer, the `Abs`.
    A row whose values all lie below 0.17 gets a slightly coarser scale, never a clipped value.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    consumers = consumers_of(graph)
    floor = "rowq/gelu_floor"
    rewritten = 0
    for gelu in list(graph.node):
        approximate = [a.s for a in gelu.attribute if a.name == "approximate"]
        if gelu.op_type not in _EXACT_GELUS or approximate not in ([], [b"none"]):
            continue
        for absolute in consumers.get(gelu.output[0], []):
            reduce = consumers.get(absolute.output[0], [])
            if absolute.op_type != "Abs" or len(reduce) != 1 or reduce[0].op_type != "ReduceMax":
                continue
            after = consumers.get(reduce[0].output[0], [])
            if len(after) != 1 or after[0].op_type != "Max" or after[0].input[1] != ROW_EPS:
                continue
            clamp = after[0]
            reduce[0].input[0] = gelu.output[0]
            clamp.input[1] = floor
            graph.node.remove(absolute)
            rewritten += 1
    if rewritten:
        graph.initializer.append(
            numpy_helper.from_array(np.array(_GELU_FLOOR, dtype=np.float32), floor)
        )
        onnx.save(model, str(path))
    return rewritten
