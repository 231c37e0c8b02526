"""Unit tier: the GPU check's transfer format (benchmarks/gpu/gpu_check.py pack / unpack), which a
GPU lease with no package index depends on: a broken piece costs a whole lease."""

from __future__ import annotations

import importlib.util
import shutil
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gpu_check", ROOT / "benchmarks" / "gpu" / "gpu_check.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pack_and_unpack_round_trip_in_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu_check = _gpu_check()
    monkeypatch.setattr(gpu_check, "PIECE_BYTES", 4096)  # several pieces from a small stream
    wheel = tmp_path / "onnxruntime_gpu-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"
    payload = {
        "onnxruntime/__init__.py": b"__version__ = '1.0'\n",
        "onnxruntime/capi/libonnxruntime_providers_cuda.so": bytes(range(256)) * 40,
        "onnxruntime/capi/libonnxruntime_providers_tensorrt.so": b"left out",
        "onnxruntime_gpu-1.0.dist-info/METADATA": b"Name: onnxruntime-gpu\n",
    }
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in payload.items():
            archive.writestr(name, data)
    folder = tmp_path / "gpu"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "model_fp16.onnx").write_bytes(b"\x01" * 9000)
    (folder / "data").mkdir()
    (folder / "data" / "texts.json").write_text('{"check": ["a"]}')

    gpu_check.pack(folder, wheel, "1.0")
    pieces = sorted((folder / "pieces").glob("p*/piece.*"))
    assert len(pieces) >= 3
    assert all(p.stat().st_size <= 4096 for p in pieces)

    # There: every piece copied into one folder, the layout with the last.
    landed = tmp_path / "ch"
    landed.mkdir()
    for piece in (folder / "pieces").glob("p*/*"):
        shutil.copy(piece, landed / piece.name)
    site, out = tmp_path / "site", tmp_path / "out"
    gpu_check.unpack(landed, site, out)
    for name, data in payload.items():
        target = site / name
        assert target.is_file() == ("tensorrt" not in name)
        if target.is_file():
            assert target.read_bytes() == data
    assert (out / "model" / "model_fp16.onnx").read_bytes() == b"\x01" * 9000
    assert (out / "data" / "texts.json").read_text() == '{"check": ["a"]}'

    pieces[1].unlink()  # a piece that did not arrive (the machine went cold between transfers)
    (landed / pieces[1].name).unlink()
    with pytest.raises(SystemExit, match="missing pieces"):
        gpu_check.unpack(landed, tmp_path / "site2", tmp_path / "out2")
