"""The int8 rewrite of a float graph: each weight product as an int8 ``MatMulIntegerToFloat`` (the
activation quantized per row or with a static scale, SmoothQuant factors, outlier channels kept
in fp32) and the word-embedding table in int8. :func:`quantize_rowwise` is the entry;
:class:`_RowQuantizer` holds its steps. The calibration it uses (bounds, peaks) is in
:mod:`.quantize`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .graph import consumers_of, drop_unused_initializers

# Lowest and highest value per channel of each weight product's input, by product (the
# calibration's, :func:`.quantize.activation_bounds`).
Bounds = dict[str, tuple[np.ndarray, np.ndarray]]

# The name of the epsilon every per-row scale takes its maximum with (skip_abs_after_gelu finds
# the per-row blocks by it).
ROW_EPS = "rowq/eps"


class _Quantized(NamedTuple):
    """An activation in uint8: its values, and what MatMulIntegerToFloat needs to undo that."""

    values: str
    row_scale: str | None  # one scale per row, applied after the product; None: static
    a_scale: str
    a_zero_point: str


def quantize_rowwise(
    in_path: Path,
    out_path: Path,
    *,
    exclude: tuple[str, ...] = (),
    outliers: dict[str, int] | None = None,
    ranges: dict[str, np.ndarray] | None = None,
    alpha: float = 0.5,
    static: tuple[str, ...] = (),
    bounds: Bounds | None = None,
    signed_weights: bool = False,
) -> dict[str, int]:
    """Write the int8 graph of the (unfused) fp32 graph at ``in_path``; returns what was changed.

    ``exclude`` holds substrings of MatMul node names to keep in fp32. With ``ranges`` (from
    :func:`peaks`), each activation's outlier channels are scaled down and the weights' rows up
    by the same factor (SmoothQuant, strength ``alpha``), so a row's int8 levels are not spent on
    a few huge channels. ``outliers`` maps regular expressions searched in MatMul node names to a
    number of input channels (the largest in ``ranges``) whose product is computed in fp32
    instead, for every product that reads that activation: their weight rows are zero in the int8
    weights (a huge weight no longer coarsens its whole column's scale) and their small fp32
    product is added back; such an activation is not smoothed.

    ``static`` holds regular expressions searched in MatMul node names: the activations those
    products read get one fixed scale and zero point instead of a scale per row, spanning their
    lowest to highest calibrated value (``bounds``, from :func:`activation_bounds`, after
    smoothing) in 256 levels. Their products then come out of ``MatMulIntegerToFloat`` fully
    scaled, with the bias added in the same kernel: no row maximum, no per-row multiplications,
    no bias addition. Values beyond the calibrated bounds saturate.

    The weights' int8 levels are stored as uint8 around 128 (u8 x u8 products, exact on every
    CPU); ``signed_weights`` stores them as int8 (u8 x s8), as before, for side-by-side studies
    only (``benchmarks/studies/int8_recipes.py``): ONNX Runtime's u8 x s8 kernel saturates on
    x86 without VNNI.
    """
    import onnx
    from onnx import helper

    if static and bounds is None:
        raise ValueError("static activation scales need the calibrated bounds")
    model = onnx.load(str(in_path))
    rewrite = _RowQuantizer(model.graph, exclude=exclude, signed_weights=signed_weights)
    rewrite.plan(outliers=outliers or {}, ranges=ranges, alpha=alpha, static=static)
    rewrite.bounds = bounds
    rewrite.rewrite_nodes()
    rewrite.install()
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(out_path))
    return rewrite.counts


class _RowQuantizer:
    """The rewrite :func:`quantize_rowwise` makes, one step per method: :meth:`plan` (which
    activations are smoothed, kept partly in fp32 or scaled statically), :meth:`rewrite_nodes`
    (each weight product and the word-embedding table in int8), :meth:`install` (the new nodes
    and weights into the graph). New nodes are appended in the order they are made, each
    quantization block right before its first user, so the graph stays topologically sorted."""

    def __init__(self, graph: Any, *, exclude: tuple[str, ...], signed_weights: bool) -> None:
        self.graph = graph
        self.exclude = exclude
        self.signed_weights = signed_weights
        self.inits = {i.name: i for i in graph.initializer}
        self.consumers = consumers_of(graph)
        self.bounds: Bounds | None = None
        self.new_nodes: list[Any] = []
        self.new_inits: list[Any] = []
        self.quantized: dict[str, _Quantized] = {}  # activation -> its uint8 form
        self.folded_adds: set[str] = set()  # outputs of the bias Adds taken into the products
        self.counts = {
            "matmul_int8": 0,
            "matmul_fp32": 0,
            "gather_int8": 0,
            "outlier_channels": 0,
            "static_activations": 0,
            "biases_in_products": 0,
        }
        self.zero_point = self.const("rowq/zero_point_u8", np.array(128, dtype=np.uint8))
        self.w_zero_point = self.const("rowq/w_zero_point_u8", np.array(128, dtype=np.uint8))
        self.one = self.const("rowq/one", np.array(1.0, dtype=np.float32))
        self.eps = self.const(ROW_EPS, np.array(1e-8, dtype=np.float32))
        self.levels = self.const("rowq/levels", np.array(127.0, dtype=np.float32))
        self.smooth: dict[str, np.ndarray] = {}
        self.outlier_channels: dict[str, np.ndarray] = {}  # activation -> channels in fp32
        self.static_acts: set[str] = set()

    def const(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.new_inits.append(numpy_helper.from_array(array, name))
        return name

    def node(self, *args: Any, **kwargs: Any) -> None:
        from onnx import helper

        self.new_nodes.append(helper.make_node(*args, **kwargs))

    def plan(
        self,
        *,
        outliers: dict[str, int],
        ranges: dict[str, np.ndarray] | None,
        alpha: float,
        static: tuple[str, ...],
    ) -> None:
        """One smoothing factor per activation, shared by every MatMul that reads it (Q, K and
        V); an activation with outlier channels computed in fp32 is not smoothed."""
        from onnx import numpy_helper

        weights_of: dict[str, list[np.ndarray]] = {}
        for node in self.graph.node:
            weight_matmul = (
                node.op_type == "MatMul" and len(node.input) > 1 and node.input[1] in self.inits
            )
            if weight_matmul and not any(s in node.name for s in self.exclude):
                weights_of.setdefault(node.input[0], []).append(
                    np.abs(numpy_helper.to_array(self.inits[node.input[1]])).max(axis=1)
                )
                k_out = next((k for key, k in outliers.items() if re.search(key, node.name)), 0)
                if k_out and ranges is not None and node.input[0] in ranges:
                    largest = np.argsort(ranges[node.input[0]])[::-1][:k_out]
                    self.outlier_channels[node.input[0]] = largest.astype(np.int64)
                if any(re.search(key, node.name) for key in static):
                    self.static_acts.add(node.input[0])
        for act, w_peaks in weights_of.items():
            if ranges is not None and act in ranges and act not in self.outlier_channels:
                w_peak = np.maximum(np.max(w_peaks, axis=0), 1e-5)
                a_peak = np.maximum(ranges[act], 1e-5)
                self.smooth[act] = (a_peak**alpha / w_peak ** (1 - alpha)).astype(np.float32)

    def smoothed(self, act: str, p: str) -> str:
        if act not in self.smooth:
            return act
        inv = self.const(f"{p}/smooth_inv", (1.0 / self.smooth[act]).astype(np.float32))
        self.node("Mul", [act, inv], [f"{p}/smoothed"])
        return f"{p}/smoothed"

    def quantize_static(self, act: str, p: str) -> _Quantized:
        """One scale and zero point spanning the activation's calibrated bounds."""
        if self.bounds is None:
            raise ValueError("static activation scales need the calibrated bounds")
        smooth = self.smooth
        low, high = (b / smooth[act] if act in smooth else b.copy() for b in self.bounds[act])
        if act in self.outlier_channels:  # computed in fp32: their values do not size the scale
            low[self.outlier_channels[act]] = 0.0
            high[self.outlier_channels[act]] = 0.0
        lowest, highest = min(float(low.min()), 0.0), max(float(high.max()), 0.0)
        scale = max(highest - lowest, 1e-8) / 255.0
        point = int(np.clip(np.rint(-lowest / scale), 0, 255))
        scale_name = self.const(f"{p}/static_scale", np.array(scale, dtype=np.float32))
        point_name = self.const(f"{p}/static_zero_point", np.array(point, dtype=np.uint8))
        self.node("QuantizeLinear", [self.smoothed(act, p), scale_name, point_name], [f"{p}/q"])
        self.counts["static_activations"] += 1
        return _Quantized(f"{p}/q", None, scale_name, point_name)

    def quantize_rows(self, act: str) -> _Quantized:
        """The activation in uint8, made once: a static scale, or one scale per row."""
        if act in self.quantized:
            return self.quantized[act]
        p = f"rowq/{len(self.quantized)}"
        if act in self.static_acts:
            self.quantized[act] = self.quantize_static(act, p)
            return self.quantized[act]
        source = self.smoothed(act, p)
        self.node("Abs", [source], [f"{p}/abs"])
        self.node("ReduceMax", [f"{p}/abs"], [f"{p}/amax"], axes=[-1], keepdims=1)
        self.node("Max", [f"{p}/amax", self.eps], [f"{p}/amax_eps"])
        self.node("Div", [f"{p}/amax_eps", self.levels], [f"{p}/scale"])
        # Multiplying by the reciprocal: one small Div per row, then a cheap Mul.
        self.node("Div", [self.levels, f"{p}/amax_eps"], [f"{p}/inv_scale"])
        self.node("Mul", [source, f"{p}/inv_scale"], [f"{p}/scaled"])
        # round(scaled) + 128 as uint8 in one kernel (|scaled| <= 127: no saturation).
        self.node("QuantizeLinear", [f"{p}/scaled", self.one, self.zero_point], [f"{p}/q"])
        self.quantized[act] = _Quantized(f"{p}/q", f"{p}/scale", self.one, self.zero_point)
        return self.quantized[act]

    def bias_add_below(self, matmul_output: str) -> Any:
        """The Add that puts a constant vector on this product, if it reads nothing else."""
        users = self.consumers.get(matmul_output, [])
        if len(users) != 1 or users[0].op_type != "Add" or len(users[0].input) != 2:
            return None
        bias = [i for i in users[0].input if i in self.inits and len(self.inits[i].dims) == 1]
        return users[0] if len(bias) == 1 else None

    def rewrite_nodes(self) -> None:
        """Every node in order: weight products and the embedding table rewritten, bias Adds
        taken into a product dropped, the rest kept."""
        for node in self.graph.node:
            if node.op_type == "Add" and node.output[0] in self.folded_adds:
                continue
            weight = self.inits.get(node.input[1]) if len(node.input) > 1 else None
            if node.op_type == "MatMul" and weight is not None and len(weight.dims) == 2:
                if any(s in node.name for s in self.exclude):
                    self.counts["matmul_fp32"] += 1
                    self.new_nodes.append(node)
                else:
                    self.rewrite_matmul(node, weight)
                continue
            table = self.inits.get(node.input[0]) if node.op_type == "Gather" else None
            if table is not None and len(table.dims) == 2 and table.dims[0] >= 1000:
                self.rewrite_gather(node, table)
                continue
            self.new_nodes.append(node)

    def split_outliers(self, node: Any, w: np.ndarray, p: str) -> str | None:
        """Compute the activation's outlier channels in fp32, zeroing their rows in ``w`` (this
        rewrite's own copy); returns that product's name, None without outlier channels.

        Their int8 weight rows are zero, so their (large) values change nothing in the int8
        product but the row's scale; their product is added back in fp32."""
        channels = self.outlier_channels.get(node.input[0])
        if channels is None:
            return None
        picked = self.const(f"{p}/outlier_channels", channels)
        w_out = self.const(f"{p}/outlier_w", w[channels, :])
        w[channels, :] = 0.0
        self.node("Gather", [node.input[0], picked], [f"{p}/outlier_x"], axis=-1)
        self.node("MatMul", [f"{p}/outlier_x", w_out], [f"{p}/outlier_y"])
        self.counts["outlier_channels"] += len(channels)
        return f"{p}/outlier_y"

    def rewrite_matmul(self, node: Any, weight: Any) -> None:
        """One weight product in int8: per-column weight scales, the activation per row or
        static, the bias inside the kernel where the scale allows, outliers added back."""
        from onnx import numpy_helper

        w = numpy_helper.to_array(weight).astype(np.float32)
        p = f"{node.name or node.output[0]}/rowq"
        fp32_part = self.split_outliers(node, w, p)
        if node.input[0] in self.smooth:
            w = w * self.smooth[node.input[0]][:, None]
        w_scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0
        w_q = np.clip(np.rint(w / w_scale), -127, 127).astype(np.int8)
        q = self.quantize_rows(node.input[0])
        # The int8 levels stored as uint8 around 128, so that ONNX Runtime runs a u8 x u8
        # product. Its u8 x s8 kernel on x86 CPUs without VNNI (AVX2 only: AMD Zen 2/3, Intel
        # before Ice Lake) adds pairs of products in int16 with saturation (vpmaddubsw): 255
        # x 127 x 2 overflows, and the vectors came out wrong (worst cosine 0.990, mean
        # 0.9946 on an AVX2 EPYC) where VNNI computed them exactly. u8 x u8 is exact on every
        # CPU, with the same levels (the same vectors as u8 x s8 on VNNI: worst 0.99531).
        if self.signed_weights:
            wq_name = self.const(f"{p}/w_int8", w_q)
        else:
            wq_name = self.const(f"{p}/w_int8", (w_q.astype(np.int16) + 128).astype(np.uint8))
        ws_name = self.const(f"{p}/w_scale", w_scale.astype(np.float32))
        # int8 product, converted and scaled per column in one kernel (ONNX Runtime's contrib
        # op); a per-row scale is applied after it, a static one (and the bias) inside it.
        inputs = [q.values, wq_name, q.a_scale, ws_name, q.a_zero_point]
        inputs.append("" if self.signed_weights else self.w_zero_point)
        output = node.output[0]
        add = self.bias_add_below(node.output[0]) if q.row_scale is None else None
        if add is not None:
            inputs.append(next(i for i in add.input if i in self.inits))
            output = add.output[0]
            self.folded_adds.add(output)
            self.counts["biases_in_products"] += 1
        int8_out = output if fp32_part is None else f"{p}/int8_part"
        product = int8_out if q.row_scale is None else f"{p}/col_scaled"
        self.node("MatMulIntegerToFloat", inputs, [product], domain="com.microsoft")
        if q.row_scale is not None:
            self.node("Mul", [product, q.row_scale], [int8_out])
        if fp32_part is not None:
            self.node("Add", [int8_out, fp32_part], [output])
        self.counts["matmul_int8"] += 1

    def rewrite_gather(self, node: Any, table: Any) -> None:
        """The word-embedding table in int8 with a scale per row, gathered and scaled back."""
        from onnx import TensorProto, numpy_helper

        t = numpy_helper.to_array(table).astype(np.float32)
        t_scale = (np.maximum(np.abs(t).max(axis=1, keepdims=True), 1e-12) / 127.0).astype(
            np.float32
        )
        t_q = np.clip(np.rint(t / t_scale), -127, 127).astype(np.int8)
        p = f"{node.name or node.output[0]}/rowq"
        tq_name = self.const(f"{p}/table_int8", t_q)
        ts_name = self.const(f"{p}/table_scale", t_scale)
        self.node("Gather", [tq_name, node.input[1]], [f"{p}/rows"], axis=0)
        self.node("Gather", [ts_name, node.input[1]], [f"{p}/scales"], axis=0)
        self.node("Cast", [f"{p}/rows"], [f"{p}/rows_f"], to=TensorProto.FLOAT)
        self.node("Mul", [f"{p}/rows_f", f"{p}/scales"], [node.output[0]])
        self.counts["gather_int8"] += 1

    def install(self) -> None:
        """The new nodes and weights in place of the old; unused weights dropped."""
        del self.graph.node[:]
        self.graph.node.extend(self.new_nodes)
        self.graph.initializer.extend(self.new_inits)
        drop_unused_initializers(self.graph)
