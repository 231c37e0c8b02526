"""The device profile: the CPU read, the int8 form chosen for it (with its features faked both
ways, and checked against ONNX Runtime's own kernels on the CPU at hand), provider settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gist_onnx import GistEncoder, ModelConfigError, ModelFilesError
from gist_onnx import device as device_mod
from gist_onnx.device import (
    ACCELERATOR,
    CPU,
    CPU_SETTINGS,
    CUDA,
    CUDA_SETTINGS,
    U8S8,
    U8U8,
    CpuInfo,
    choose_int8_form,
    cpu_info,
    parse_cpuinfo,
    profile_for,
    settings_for,
)
from tests.support.tiny import write_tiny_model

# The first processor's block of /proc/cpuinfo on the kinds of machine met (flags shortened to
# those that matter, with a few around them).
SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx_vnni avx512_bf16 amx_int8

processor\t: 1
model name\t: should not be read
"""
ZEN4 = """processor : 0
model name : AMD EPYC 9R14
flags : fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16
"""
ZEN3 = """processor : 0
model name : AMD EPYC 7R13 Processor
flags : fpu sse2 avx avx2 fma sha_ni vaes
"""
SKYLAKE_SP = """processor : 0
model name : Intel(R) Xeon(R) Platinum 8175M CPU @ 2.50GHz
flags : fpu sse2 avx avx2 fma avx512f avx512bw avx512cd
"""
ALDER_LAKE = """processor : 0
model name : 12th Gen Intel(R) Core(TM) i7-1260P
flags : fpu sse2 avx avx2 fma avx_vnni
"""
GRAVITON3 = """processor : 0
BogoMIPS : 2100.00
Features : fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimddp sve i8mm bf16
CPU implementer : 0x41
CPU part : 0xd40
"""


@pytest.mark.parametrize(
    ("text", "machine", "form", "why"),
    [
        (SAPPHIRE_RAPIDS, "x86_64", U8S8, "amx_int8"),
        (ZEN4, "x86_64", U8S8, "avx512_vnni"),
        (ALDER_LAKE, "x86_64", U8S8, "avx_vnni"),
        (ZEN3, "x86_64", U8U8, "no VNNI"),
        (SKYLAKE_SP, "x86_64", U8U8, "no VNNI"),  # AVX-512 without VNNI saturates too
        (GRAVITON3, "aarch64", U8S8, "arm64"),
    ],
)
def test_the_int8_form_is_chosen_from_the_cpus_flags(
    text: str, machine: str, form: str, why: str
) -> None:
    cpu = parse_cpuinfo(text, machine)
    chosen = choose_int8_form(cpu)
    assert (chosen.form, why in chosen.reason) == (form, True)
    assert cpu.model and "should not" not in cpu.model
    assert cpu.describe().startswith(cpu.model)


def test_a_cpu_whose_flags_cannot_be_read_runs_the_form_exact_everywhere() -> None:
    assert choose_int8_form(CpuInfo("x86_64", "unknown")).form == U8U8
    assert choose_int8_form(CpuInfo("riscv64", "unknown", frozenset({"v"}))).form == U8U8


def test_the_form_can_be_forced_and_a_wrong_name_is_refused() -> None:
    zen3 = parse_cpuinfo(ZEN3, "x86_64")
    assert choose_int8_form(zen3, "u8s8").form == U8S8
    assert choose_int8_form(zen3, "auto").form == U8U8
    with pytest.raises(ModelConfigError, match=r"'auto'.*'u8s8'.*'u8u8'"):
        choose_int8_form(zen3, "s8s8")


def _u8s8_product_is_exact() -> bool:
    """ONNX Runtime's own answer on this CPU: a u8 x s8 product whose pairs overflow int16."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    activations = rng.integers(200, 256, size=(8, 64), dtype=np.uint8)
    weights = rng.integers(100, 128, size=(64, 16), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])],
        "probe",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [None, 64])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, None)],
        [numpy_helper.from_array(weights, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    found = session.run(None, {"A": activations})[0]
    return bool((found == activations.astype(np.int64) @ weights.astype(np.int64)).all())


def test_the_choice_on_this_cpu_agrees_with_onnx_runtimes_kernels() -> None:
    """On whichever CPU runs the suite: u8 x s8 is chosen exactly where ONNX Runtime computes
    it exactly (with VNNI, AMX or on arm64); where it saturates, u8 x u8 is chosen."""
    cpu = cpu_info()
    chosen = choose_int8_form(cpu)
    exact = _u8s8_product_is_exact()
    assert (chosen.form == U8S8) == exact, (cpu.describe(), chosen, exact)


def test_every_provider_has_one_entry_and_unknown_ones_are_not_run_as_the_cpu() -> None:
    assert settings_for(CPU) is CPU_SETTINGS and settings_for(CUDA) is CUDA_SETTINGS
    other = settings_for("DmlExecutionProvider")
    assert other is ACCELERATOR and other.kind == "accelerator"
    assert (other.tokens_per_run, other.parallel_runs, other.spinning) == (0, False, False)
    assert not other.cuda_graph and other.disabled_optimizers == ()
    profile = profile_for(CPU, 2, cpu=parse_cpuinfo(ZEN4, "x86_64"))
    described = profile.describe()
    assert described["int8_form"] == U8S8 and "avx512_vnni" in described["cpu_flags"]
    assert (described["tokens_per_run"], described["threads"]) == (256, 2)


def test_the_tiny_models_encoder_reports_its_profile(tmp_path: Path) -> None:
    encoder = GistEncoder(write_tiny_model(tmp_path / "m"), threads=1)
    described = encoder.describe()
    assert described["int8_form"] is None  # an fp32 graph
    assert described["threads"] == 1 == encoder.profile.threads
    assert described["cpu"] == cpu_info().model and described["kind"] == "cpu"
    assert "int8_form" not in repr(encoder)


# --- The exported model's two int8 forms ------------------------------------------------------


@pytest.mark.model
def test_the_export_writes_both_int8_forms_with_the_same_levels(exported: Path) -> None:
    import onnx
    from onnx import numpy_helper

    from gist_onnx.export.int8_forms import check_forms

    base, other = exported / "model_int8.onnx", exported / "model_int8_u8s8.onnx"
    assert check_forms(base, other) == []
    model = onnx.load(str(other))
    inits = {t.name: t for t in model.graph.initializer}
    products = [n for n in model.graph.node if n.op_type == "MatMulIntegerToFloat"]
    assert len(products) == 36
    for node in products:
        assert numpy_helper.to_array(inits[node.input[1]]).dtype == np.int8
        assert len(node.input) < 6 or node.input[5] == ""  # symmetric: no zero point
    # Its own weights file holds only its int8 weights; the rest is read from the base's.
    shared = {
        e.value
        for t in onnx.load(str(other), load_external_data=False).graph.initializer
        for e in t.external_data
        if e.key == "location"
    }
    assert shared == {"model_int8_u8s8.onnx.data", "model_int8.onnx.data"}
    own = (exported / "model_int8_u8s8.onnx.data").stat().st_size
    assert own < (exported / "model_int8.onnx.data").stat().st_size / 2
    manifest = json.loads((exported / "gist_onnx_manifest.json").read_text())
    forms = manifest["graphs"]["int8"]["forms"]
    assert forms[U8U8]["file"] == "model_int8.onnx"
    assert forms[U8S8]["data_files"] == ["model_int8_u8s8.onnx.data", "model_int8.onnx.data"]
    assert forms[U8S8]["same_levels"] is True
    for name in ("model_int8_u8s8.onnx", "model_int8_u8s8.onnx.data"):
        assert name in manifest["files"]


@pytest.mark.model
@pytest.mark.parametrize(("cpu", "form"), [(ZEN3, U8U8), (SAPPHIRE_RAPIDS, U8S8)])
def test_the_encoder_loads_the_form_its_cpu_takes(
    exported: Path, monkeypatch: pytest.MonkeyPatch, cpu: str, form: str
) -> None:
    monkeypatch.setattr(device_mod, "cpu_info", lambda: parse_cpuinfo(cpu, "x86_64"))
    encoder = GistEncoder(exported, variant="int8")
    assert encoder.int8_form == form == encoder.describe()["int8_form"]
    assert encoder.files.graph.name == (
        "model_int8_u8s8.onnx" if form == U8S8 else "model_int8.onnx"
    )
    assert f"int8_form={form!r}" in repr(encoder)
    assert encoder.int8_form_reason == encoder.profile.int8.reason
    read = {p.name for p in encoder.files_read}
    assert "model_int8.onnx.data" in read  # both forms read the base's shared tensors
    assert ("model_int8_u8s8.onnx.data" in read) == (form == U8S8)
    shipped = {p.name for p in encoder.files_to_ship}
    assert {"model_int8.onnx", "model_int8_u8s8.onnx", "model_int8_u8s8.onnx.data"} <= shipped
    # The fp32 graph has no int8 form, whatever the CPU.
    assert GistEncoder(exported).int8_form is None


@pytest.mark.model
def test_the_variable_forces_a_form(exported: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIST_ONNX_INT8_FORM", "u8u8")
    monkeypatch.setattr(device_mod, "cpu_info", lambda: parse_cpuinfo(SAPPHIRE_RAPIDS, "x86_64"))
    encoder = GistEncoder(exported, variant="int8")
    assert (encoder.int8_form, encoder.int8_form_reason) == (U8U8, "asked for")
    monkeypatch.setenv("GIST_ONNX_INT8_FORM", "fast")
    with pytest.raises(ModelConfigError, match="Unknown int8 form 'fast'"):
        GistEncoder(exported, variant="int8")


@pytest.mark.model
def test_both_forms_give_the_same_vectors_where_both_are_exact(exported: Path) -> None:
    """On a CPU with VNNI, AMX or on arm64 both forms are exact: the same vectors. On x86 without
    VNNI only u8 x u8 is (test_the_choice_on_this_cpu_agrees_with_onnx_runtimes_kernels shows
    u8 x s8 saturating there), so there is nothing to compare."""
    here = choose_int8_form(cpu_info())
    if here.form != U8S8:
        pytest.skip(f"u8 x s8 is not exact on {cpu_info().describe()}: {here.reason}")
    from gist_onnx.export.texts import CALIBRATION_TEXTS, PARITY_TEXTS

    texts = [*PARITY_TEXTS, *CALIBRATION_TEXTS]
    u8u8 = GistEncoder(exported, variant="int8", int8_form=U8U8).encode(texts)
    u8s8 = GistEncoder(exported, variant="int8", int8_form=U8S8).encode(texts)
    assert np.abs(u8u8 - u8s8).max() <= 1e-6


@pytest.mark.model
def test_a_corrupted_shared_weights_file_fails_the_u8s8_form_too(
    exported: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(exported, folder)
    data = folder / "model_int8.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(ModelFilesError, match=r"model_int8\.onnx\.data"):
        GistEncoder(folder, variant="int8", int8_form=U8S8)


@pytest.mark.model
def test_a_folder_with_one_form_runs_it_and_says_so(exported: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(exported, folder, ignore=shutil.ignore_patterns("*_u8s8.onnx*"))
    encoder = GistEncoder(folder, variant="int8", int8_form=U8S8)
    assert encoder.files.graph.name == "model_int8.onnx" and encoder.int8_form == U8U8
    assert "re-export" in (encoder.int8_form_reason or "")
