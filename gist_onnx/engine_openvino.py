"""Stage 3, second engine: the exported fp32 graph on OpenVINO (``backend="openvino"``, the
``openvino`` extra), for the CPUs where it runs faster than ONNX Runtime.

OpenVINO compiles ``model.onnx`` itself (the pooling inside, the same inputs and output), so the
encoder around it is unchanged: the same tokenizer, runs and vectors. Two precisions:

- ``variant="fp32"``: float32 arithmetic (``INFERENCE_PRECISION_HINT`` f32), held to the fp32
  graph's parity thresholds;
- ``variant="bf16"``: bfloat16 arithmetic where the CPU has it (AMX, AVX-512 BF16), float32
  elsewhere; held to the int8 graph's thresholds. On an AVX-512 BF16 EPYC, OpenVINO bf16 ran
  1.6x the fp32 graph (benchmarks/results/avx512-vnni/PEERS.md).

One compiled model with the LATENCY hint and ``threads`` threads runs every batch in turn (a run
of several texts uses them all); OpenVINO's compiled model is safe to call from several threads,
each with its own infer request.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import MissingExtraError, ModelConfigError
from .session import METADATA_NORMALIZE, METADATA_POOLING, GraphInfo
from .tokenizer import Batch

OPENVINO = "OpenVINO"
PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


def _metadata(model: Any, key: str) -> str | None:
    """An ONNX metadata entry as OpenVINO keeps it (its rt_info's "framework" section)."""
    try:
        value = model.get_rt_info(["framework", key])
    except (RuntimeError, KeyError, IndexError):
        return None
    return str(value.astype(str))


class OpenVINOSession:
    """The graph compiled by OpenVINO for the CPU, fed from a :class:`Batch` like
    :class:`gist_onnx.session.GraphSession`."""

    def __init__(self, graph: Path, *, variant: str, threads: int) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise MissingExtraError("backend='openvino'", "openvino", "openvino") from exc
        if variant not in PRECISIONS:
            raise ModelConfigError(
                f"backend='openvino' runs the fp32 graph as variant 'fp32' or 'bf16', not "
                f"{variant!r}; the int8 and fp16 graphs run on ONNX Runtime (backend='onnx')."
            )
        core = ov.Core()
        try:
            model = core.read_model(str(graph))
            self.compiled = core.compile_model(
                model,
                "CPU",
                {
                    "INFERENCE_NUM_THREADS": threads,
                    "INFERENCE_PRECISION_HINT": PRECISIONS[variant],
                    "PERFORMANCE_HINT": "LATENCY",
                },
            )
        except RuntimeError as exc:
            raise ModelConfigError(
                f"OpenVINO could not compile {graph}: {exc}. Re-export the folder, or run it with "
                "backend='onnx'."
            ) from exc
        # What OpenVINO computes in on this CPU: bf16 only where the CPU has it.
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        self.precision = {"f32": "fp32"}.get(name, name)
        self.providers = [OPENVINO]
        inputs = tuple(i.any_name for i in model.inputs)
        output = model.outputs[0]
        shape = output.get_partial_shape()
        if "input_ids" not in inputs or shape.rank.get_length() != 2:
            raise ModelConfigError(
                f"backend='openvino' runs graphs that pool inside (gist-onnx's export); {graph} "
                f"takes {list(inputs)} and returns {shape}."
            )
        normalize = _metadata(model, METADATA_NORMALIZE)
        last = shape[1]
        self.info = GraphInfo(
            inputs=inputs,
            output=output.any_name,
            pooled=True,
            dimension=last.get_length() if last.is_static else None,
            pooling=_metadata(model, METADATA_POOLING),
            normalize=None if normalize not in ("true", "false") else normalize == "true",
        )
        self._requests = threading.local()

    @property
    def provider(self) -> str:
        return OPENVINO

    def run(self, batch: Batch) -> npt.NDArray[np.float32]:
        """The pooled vectors of one run, (batch, dim)."""
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.compiled.create_infer_request()
        feed = {name: getattr(batch, name) for name in self.info.inputs}
        result = request.infer(feed)
        return np.array(result[self.compiled.output(0)], dtype=np.float32)
