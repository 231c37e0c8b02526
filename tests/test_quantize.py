"""The int8 graph's rewrites: the attention-bias fold is exact, the outlier channels are the only
weights left in fp32, the layer norms' outputs take a static scale with the bias inside the
product, and int8 holds on scripts the calibration never saw."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def raw_graph(tmp_path_factory: pytest.TempPathFactory, stand_in_dir: Path) -> Path:
    from gist_onnx.export.graph import export_pooled

    path = tmp_path_factory.mktemp("raw") / "raw.onnx"
    export_pooled(stand_in_dir, path, pooling="mean", normalize=True)
    return path


def _feeds() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    feeds = []
    for batch, length in ((1, 3), (3, 17), (2, 64)):
        ids = rng.integers(1000, 30000, size=(batch, length), dtype=np.int64)
        mask = np.ones_like(ids)
        if batch > 1:
            mask[0, length // 2 :] = 0  # padding: the folded key bias must not leak into it
            ids[0, length // 2 :] = 0
        feeds.append(
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )
    return feeds


def test_folding_the_key_and_value_biases_changes_no_vector(
    raw_graph: Path, tmp_path: Path
) -> None:
    import onnx
    import onnxruntime as ort

    from gist_onnx.export.quantize import fold_attention_biases

    folded = tmp_path / "folded.onnx"
    assert fold_attention_biases(raw_graph, folded) == 6  # every layer
    adds = [
        sum(n.op_type == "Add" for n in onnx.load(str(p)).graph.node) for p in (raw_graph, folded)
    ]
    assert adds[0] - adds[1] == 12  # one key and one value bias per layer
    before = ort.InferenceSession(str(raw_graph), providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(str(folded), providers=["CPUExecutionProvider"])
    for feed in _feeds():
        a, b = before.run(None, feed)[0], after.run(None, feed)[0]
        assert np.abs(a - b).max() < 1e-5


def test_a_graph_without_the_pattern_is_written_unchanged(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from gist_onnx.export.quantize import fold_attention_biases

    node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    onnx.save(helper.make_model(graph), str(tmp_path / "in.onnx"))
    assert fold_attention_biases(tmp_path / "in.onnx", tmp_path / "out.onnx") == 0
    assert len(onnx.load(str(tmp_path / "out.onnx")).graph.node) == 1


def test_the_int8_graph_computes_one_input_channel_per_ffn_down_projection_in_fp32(
    exported: Path,
) -> None:
    import onnx
    from onnx import TensorProto

    manifest = json.loads((exported / "gist_onnx_manifest.json").read_text())
    quantized = manifest["graphs"]["int8"]["quantized"]
    assert quantized["matmul_int8"] == 36 and quantized["matmul_fp32"] == 0
    assert quantized["outlier_channels"] == 6  # one per layer
    assert quantized["attention_biases_folded"] == 6
    model = onnx.load(str(exported / "model_int8.onnx"))
    float_matrices = [
        tuple(t.dims)
        for t in model.graph.initializer
        if t.data_type == TensorProto.FLOAT and len(t.dims) == 2
    ]
    # Position and token-type embeddings (and the word embeddings' row scales) stay fp32; of the
    # weights, one row per FFN down-projection, whose row in the int8 weights is zero.
    assert sorted(float_matrices) == [(1, 384)] * 6 + [(2, 384), (512, 384), (30522, 1)]
    int8 = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for name, picked in int8.items():
        if name.endswith("/outlier_channels"):
            weights = int8[name.replace("/outlier_channels", "/w_int8")]
            # uint8 around 128: a zero weight is stored as 128.
            assert weights.shape == (1536, 384) and (weights[picked] == 128).all()


def test_every_integer_product_is_u8_by_u8_so_no_cpu_saturates(exported: Path) -> None:
    """ONNX Runtime's u8 x s8 kernel on x86 without VNNI sums pairs of products in int16 with
    saturation; u8 x u8 is exact everywhere. Every product of the int8 graph must be u8 x u8."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(exported / "model_int8.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    products = [n for n in model.graph.node if n.op_type == "MatMulIntegerToFloat"]
    assert len(products) == 36
    for node in products:
        weights, zero_point = inits[node.input[1]], inits[node.input[5]]
        assert weights.dtype == np.uint8 and zero_point.dtype == np.uint8 and zero_point == 128
        assert weights.min() >= 1  # the levels -127..127, stored as 1..255


def test_u8_by_u8_products_are_exact_where_u8_by_s8_may_saturate() -> None:
    """The kind of fault the weights' uint8 storage avoids, on the CPU running the tests: a u8 x
    s8 product that needs more than int16 per pair comes out exact as u8 x u8."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    def product(weights: np.ndarray, zero_point: int) -> np.ndarray:
        inits = [
            numpy_helper.from_array(weights, "B"),
            numpy_helper.from_array(np.array(zero_point, weights.dtype), "zp"),
        ]
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["A", "B", "", "zp"], ["Y"])],
            "g",
            [helper.make_tensor_value_info("A", TensorProto.UINT8, [None, 64])],
            [helper.make_tensor_value_info("Y", TensorProto.INT32, None)],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        cpu = ["CPUExecutionProvider"]
        session = ort.InferenceSession(model.SerializeToString(), providers=cpu)
        out: np.ndarray = session.run(None, {"A": activations})[0]
        return out

    rng = np.random.default_rng(0)
    activations = rng.integers(200, 256, size=(8, 64), dtype=np.uint8)
    signed = rng.integers(100, 128, size=(64, 16), dtype=np.int8)
    exact = activations.astype(np.int64) @ signed.astype(np.int64)
    unsigned = (signed.astype(np.int16) + 128).astype(np.uint8)
    np.testing.assert_array_equal(product(unsigned, 128), exact)


def test_layer_norm_outputs_take_a_static_scale_and_the_bias_inside_the_product(
    exported: Path,
) -> None:
    import onnx
    from onnx import numpy_helper

    quantized = json.loads((exported / "gist_onnx_manifest.json").read_text())["graphs"]["int8"][
        "quantized"
    ]
    # Per layer: the input of Q, K and V (one, shared) and of the FFN up-projection.
    assert quantized["static_activations"] == 12
    assert quantized["biases_in_products"] == 12  # the query's and the up-projection's
    model = onnx.load(str(exported / "model_int8.onnx"))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    consumers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    products = [n for n in model.graph.node if n.op_type == "MatMulIntegerToFloat"]
    static = [n for n in products if n.input[2].endswith("/static_scale")]
    assert len(products) == 36 and len(static) == 24  # Q, K, V and up in each of 6 layers
    for node in static:
        scale, point = inits[node.input[2]], inits[node.input[4]]
        assert scale.shape == () and scale > 0 and point.dtype == np.uint8
        # Fully scaled in the kernel: no per-row multiplication reads its output.
        assert "Mul" not in consumers[node.output[0]]
    assert sum(len(n.input) == 7 and n.input[6] != "" for n in static) == 12
    # The others (attention output, FFN down) keep a scale per row, multiplied in after.
    for node in products:
        if node not in static:
            assert consumers[node.output[0]] == ["Mul"]


def test_static_scales_span_the_calibrated_bounds(raw_graph: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from gist_onnx.export.build import STATIC_INPUTS
    from gist_onnx.export.quantize import activation_bounds, peaks
    from gist_onnx.export.rowwise import quantize_rowwise

    feeds = _feeds()
    bounds = activation_bounds(raw_graph, feeds)
    assert len(bounds) == 24  # per layer: Q/K/V's shared input, and 3 more products
    for name, (low, high) in bounds.items():
        assert (low <= high).all(), name
        assert np.array_equal(peaks(bounds)[name], np.maximum(np.abs(low), np.abs(high)))
    with pytest.raises(ValueError, match="bounds"):
        quantize_rowwise(raw_graph, tmp_path / "x.onnx", static=STATIC_INPUTS)
    per_row, static = tmp_path / "per_row.onnx", tmp_path / "static.onnx"
    ranges = peaks(bounds)
    quantize_rowwise(raw_graph, per_row, ranges=ranges, alpha=0.65)
    counts = quantize_rowwise(
        raw_graph, static, ranges=ranges, alpha=0.65, static=STATIC_INPUTS, bounds=bounds
    )
    # This graph still has the key's and value's biases: those go into their products too.
    assert counts["static_activations"] == 12 and counts["biases_in_products"] == 24
    a = ort.InferenceSession(str(per_row), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(static), providers=["CPUExecutionProvider"])
    for feed in feeds:  # calibrated on these very rows: nothing saturates
        x, y = a.run(None, feed)[0], b.run(None, feed)[0]
        assert (np.sum(x * y, axis=1) > 0.998).all()  # unit vectors: the cosine
    # The bounds are what size the scales: a tenth of them saturates most values.
    narrow = {name: (low / 10, high / 10) for name, (low, high) in bounds.items()}
    clipped = tmp_path / "clipped.onnx"
    quantize_rowwise(
        raw_graph, clipped, ranges=ranges, alpha=0.65, static=STATIC_INPUTS, bounds=narrow
    )
    c = ort.InferenceSession(str(clipped), providers=["CPUExecutionProvider"])
    x, z = a.run(None, feeds[1])[0], c.run(None, feeds[1])[0]
    assert np.isfinite(z).all() and (np.sum(x * z, axis=1) < 0.99).all()


def test_int8_holds_on_paragraphs_the_calibration_never_saw(
    exported: Path, stand_in_dir: Path
) -> None:
    from gist_onnx import GistEncoder
    from gist_onnx.export.check import cosines, reference_vectors
    from gist_onnx.export.texts import CJK_PARAGRAPHS

    reference = reference_vectors(stand_in_dir, CJK_PARAGRAPHS)
    vectors = GistEncoder(exported, variant="int8").encode(CJK_PARAGRAPHS)
    assert cosines(vectors, reference).min() >= 0.995


def test_sequence_major_changes_no_vector_and_drops_three_transposes_a_layer(
    raw_graph: Path, tmp_path: Path
) -> None:
    import shutil

    import onnx
    import onnxruntime as ort

    from gist_onnx.export.graph import preoptimize_for_cpu
    from gist_onnx.export.rowwise import quantize_rowwise
    from gist_onnx.export.sequence_major import sequence_major

    batch_major = tmp_path / "int8.onnx"
    quantize_rowwise(raw_graph, batch_major)
    preoptimize_for_cpu(batch_major)
    rewritten = tmp_path / "int8_seqmajor.onnx"
    shutil.copy(batch_major, rewritten)
    assert sequence_major(rewritten, num_heads=12, hidden_size=384) == 6

    def transposes(path: Path) -> list[list[int]]:
        graph = onnx.load(str(path)).graph
        return [list(n.attribute[0].ints) for n in graph.node if n.op_type == "Transpose"]

    assert len(transposes(batch_major)) == 24
    graph = onnx.load(str(rewritten)).graph
    used = {name for node in graph.node for name in node.input}
    # An initializer nothing reads makes ONNX Runtime print a warning at every load.
    assert [i.name for i in graph.initializer if i.name not in used] == []
    # One a layer (the heads merged back), the ids and type ids in, the positions, the pooling.
    assert sorted(map(tuple, transposes(rewritten))) == sorted(
        [(2, 0, 1, 3)] * 6 + [(1, 0)] * 2 + [(1, 0, 2)] * 2
    )
    before = ort.InferenceSession(str(batch_major), providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(str(rewritten), providers=["CPUExecutionProvider"])
    for feed in _feeds():  # one text, and padded batches
        a, b = before.run(None, feed)[0], after.run(None, feed)[0]
        assert a.shape == b.shape
        assert np.abs(a - b).max() < 1e-6
    # Done once: a second pass finds no batch-major attention and leaves the file alone.
    data = rewritten.read_bytes()
    assert sequence_major(rewritten, num_heads=12, hidden_size=384) == 0
    assert rewritten.read_bytes() == data


def test_sequence_major_leaves_a_graph_it_does_not_know(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from gist_onnx.export.sequence_major import sequence_major

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph), str(path))
    data = path.read_bytes()
    assert sequence_major(path, num_heads=12, hidden_size=384) == 0
    assert path.read_bytes() == data


def test_gelu_rows_skip_abs_with_the_same_vectors(raw_graph: Path, tmp_path: Path) -> None:
    import shutil

    import onnx
    import onnxruntime as ort

    from gist_onnx.export.graph import preoptimize_for_cpu
    from gist_onnx.export.quantize import skip_abs_after_gelu
    from gist_onnx.export.rowwise import quantize_rowwise

    with_abs = tmp_path / "int8.onnx"
    quantize_rowwise(raw_graph, with_abs)
    preoptimize_for_cpu(with_abs)
    rewritten = tmp_path / "int8_no_abs.onnx"
    shutil.copy(with_abs, rewritten)
    assert skip_abs_after_gelu(rewritten) == 6  # every FFN down-projection's input

    def count(path: Path, op: str) -> int:
        return sum(n.op_type == op for n in onnx.load(str(path)).graph.node)

    assert count(with_abs, "Abs") - count(rewritten, "Abs") == 6
    before = ort.InferenceSession(str(with_abs), providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(str(rewritten), providers=["CPUExecutionProvider"])
    for feed in _feeds():
        assert np.abs(before.run(None, feed)[0] - after.run(None, feed)[0]).max() == 0.0
    data = rewritten.read_bytes()
    assert skip_abs_after_gelu(rewritten) == 0  # done once; the file is left alone
    assert rewritten.read_bytes() == data


def test_the_gelu_floor_bounds_gelu_from_below() -> None:
    import math

    from gist_onnx.export.quantize import _GELU_FLOOR

    xs = np.linspace(-10, 10, 200_001)
    gelu = xs * 0.5 * (1 + np.vectorize(math.erf)(xs / math.sqrt(2)))
    assert -_GELU_FLOOR < gelu.min() < -0.169  # the floor is tight and on the safe side
