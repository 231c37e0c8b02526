"""Export stage 2b: the int8 graph's second form, u8 x s8 products, beside the u8 x u8 one.

Both forms hold the same int8 levels: a weight level ``q`` in -127..127 is stored as ``q + 128``
(uint8, zero point 128) in ``model_int8.onnx`` and as ``q`` (int8, no zero point) in
``model_int8_u8s8.onnx``; every other node and tensor is the same. ONNX Runtime computes
``(a - a0) (w - w0)`` in int32 either way, so where both kernels are exact the vectors are the
same; which one is exact and fast depends on the CPU (:mod:`gist_onnx.device` chooses at load).

The second form's own ``.data`` holds only its int8 weights (~10 MB for MiniLM); every other
tensor (the int8 word embeddings, scales, biases, norms) is read from ``model_int8.onnx.data``,
so one export folder serves every CPU for a few MB more, and each byte either graph reads is
listed in the manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..model.layout import exported_graph, u8s8_graph

PRODUCT = "MatMulIntegerToFloat"


def _products(graph: Any) -> list[Any]:
    return [n for n in graph.node if n.op_type == PRODUCT]


def write_u8s8(base: Path) -> Path:
    """Write the u8 x s8 form of the externalized u8 x u8 graph ``base``; returns its path."""
    import onnx
    from onnx import TensorProto, numpy_helper

    out = u8s8_graph(base)
    model = onnx.load(str(base), load_external_data=False)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    weights: dict[str, np.ndarray] = {}
    for node in _products(graph):
        name, zero_point = node.input[1], node.input[5] if len(node.input) > 5 else ""
        stored = inits[name]
        if stored.data_type != TensorProto.UINT8 or not zero_point:
            raise ValueError(f"{base}: {node.name} is not a u8 x u8 product with a zero point")
        point = numpy_helper.to_array(inits[zero_point], base_dir=str(base.parent))
        if point.shape != () or int(point) != 128:
            raise ValueError(f"{base}: {node.name}'s weights are not stored around 128")
        if name not in weights:
            levels = numpy_helper.to_array(stored, base_dir=str(base.parent))
            weights[name] = (levels.astype(np.int16) - 128).astype(np.int8)
        node.input[5] = ""  # symmetric int8 weights: no zero point
    data = out.with_name(out.name + ".data")
    offset = 0
    with data.open("wb") as handle:
        for name, levels in weights.items():
            raw = levels.tobytes()
            tensor = inits[name]
            tensor.data_type = TensorProto.INT8
            del tensor.external_data[:]
            for key, value in (("location", data.name), ("offset", offset), ("length", len(raw))):
                tensor.external_data.add(key=key, value=str(value))
            handle.write(raw)
            offset += len(raw)
            pad = -offset % 64  # each tensor starts on a 64-byte boundary, as for mapping
            handle.write(b"\0" * pad)
            offset += pad
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(model, str(out))
    return out


def check_forms(base: Path, other: Path) -> list[str]:
    """How the two forms differ beyond the storage of the weights' levels (empty: they hold the
    same levels and the same graph otherwise)."""
    import onnx
    from onnx import numpy_helper

    a = onnx.load(str(base))
    b = onnx.load(str(other))
    problems = []
    if len(a.graph.node) != len(b.graph.node):
        problems.append(f"{len(a.graph.node)} nodes against {len(b.graph.node)}")
    b_inits = {t.name: t for t in b.graph.initializer}
    a_inits = {t.name: t for t in a.graph.initializer}
    products = {n.input[1] for n in _products(a.graph)}
    for x, y in zip(a.graph.node, b.graph.node, strict=False):
        if x.op_type != y.op_type or list(x.output) != list(y.output):
            problems.append(f"node {x.name} differs")
            continue
        inputs_x, inputs_y = list(x.input), list(y.input)
        if x.op_type == PRODUCT:
            inputs_x, inputs_y = inputs_x[:5] + inputs_x[6:], inputs_y[:5] + inputs_y[6:]
        if inputs_x != inputs_y:
            problems.append(f"node {x.name} reads other inputs")
    for name, tensor in a_inits.items():
        if name not in b_inits:
            if name.endswith("zero_point_u8") and name.startswith("rowq/w_"):
                continue  # the weights' zero point, which the u8 x s8 form has no use for
            problems.append(f"{name} missing")
            continue
        left = numpy_helper.to_array(tensor, base_dir=str(base.parent))
        right = numpy_helper.to_array(b_inits[name], base_dir=str(other.parent))
        if name in products:
            same = right.dtype == np.int8 and np.array_equal(left.astype(np.int16) - 128, right)
        else:
            same = left.dtype == right.dtype and np.array_equal(left, right)
        if not same:
            problems.append(f"{name} differs")
    return problems


# Where both forms run exact, their vectors may differ by float rounding at most.
SAME_VECTORS_MAX_DIFF = 1e-6


def write_forms(output: Path, texts: list[str], *, device: str) -> tuple[dict[str, Any], bool]:
    """Write the u8 x s8 form beside ``output``'s externalized ``model_int8.onnx``, check it, and
    return the manifest's ``forms`` record with whether the check passed.

    The check: the two graphs are the same but for the weights' storage (:func:`check_forms`);
    and where this CPU runs u8 x s8 exactly, both forms' vectors of ``texts`` are compared.
    """
    from gist_onnx import GistEncoder
    from gist_onnx.device import U8S8, U8U8, choose_int8_form, cpu_info

    base = output / exported_graph("int8")
    other = write_u8s8(base)
    problems = check_forms(base, other)
    cpu = cpu_info()
    here = choose_int8_form(cpu)
    record: dict[str, Any] = {
        U8U8: {"file": base.name, "data_files": [f"{base.name}.data"]},
        U8S8: {
            "file": other.name,
            "data_files": [f"{other.name}.data", f"{base.name}.data"],
            "own_bytes": other.stat().st_size + (output / f"{other.name}.data").stat().st_size,
            "same_levels": not problems,
        },
    }
    if problems:
        record[U8S8]["problems"] = problems[:10]
        print(f"  int8 u8s8 form: differs from u8u8 beyond the weights: {problems[:3]}")
        return record, False
    if here.form != U8S8:
        record[U8S8]["vectors"] = f"not run on {cpu.describe()}: {here.reason}"
        print(f"  int8 u8s8 form: same levels as u8u8; not run here ({here.reason})")
        return record, True
    vectors = [
        GistEncoder(output, variant="int8", device=device, int8_form=form).encode(texts)
        for form in (U8U8, U8S8)
    ]
    diff = float(np.abs(vectors[0] - vectors[1]).max())
    passed = diff <= SAME_VECTORS_MAX_DIFF
    record[U8S8]["vectors"] = f"max |diff| to u8u8 {diff:.2e} on {cpu.describe()}"
    print(f"  int8 u8s8 form: {record[U8S8]['vectors']}: {'ok' if passed else 'FAILED'}")
    return record, passed
