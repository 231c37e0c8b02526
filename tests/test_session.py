"""Unit tier: provider choice, the onnxruntime / onnxruntime-gpu clash, graph forms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gist_onnx import GistEncoder, ModelConfigError, ProviderUnavailableError
from gist_onnx import device as device_mod
from gist_onnx import session as session_mod
from tests.support.tiny import write_tiny_model

HAS_CUDA = "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers()


@pytest.fixture
def cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])


def test_cpu_is_the_default() -> None:
    assert session_mod.choose_providers("cpu", None) == ["CPUExecutionProvider"]


def test_cuda_without_cuda_raises_listing_providers(cpu_only: None) -> None:
    with pytest.raises(ProviderUnavailableError, match=r"only \['CPUExecutionProvider'\]"):
        session_mod.choose_providers("cuda", None)


def test_cuda_error_explains_the_clash(cpu_only: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        session_mod, "installed_runtimes", lambda: ["onnxruntime", "onnxruntime-gpu"]
    )
    with pytest.raises(ProviderUnavailableError, match="overwrite each other") as info:
        session_mod.choose_providers("cuda", None)
    assert session_mod.GPU_FIX in str(info.value)


def test_auto_falls_back_to_cpu_and_warns_only_on_a_clash(
    cpu_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_mod, "installed_runtimes", lambda: ["onnxruntime"])
    assert session_mod.choose_providers("auto", None) == ["CPUExecutionProvider"]
    monkeypatch.setattr(
        session_mod, "installed_runtimes", lambda: ["onnxruntime", "onnxruntime-gpu"]
    )
    with pytest.warns(RuntimeWarning, match="runs on the CPU"):
        assert session_mod.choose_providers("auto", None) == ["CPUExecutionProvider"]


def test_auto_reports_its_choice(tmp_path: Path) -> None:
    enc = GistEncoder(write_tiny_model(tmp_path / "m"), device="auto")
    assert enc.provider == ("CUDAExecutionProvider" if HAS_CUDA else "CPUExecutionProvider")


def test_unknown_device_and_provider(tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailableError, match="Unknown device 'tpu'"):
        session_mod.choose_providers("tpu", None)
    with pytest.raises(ProviderUnavailableError, match="FooExecutionProvider"):
        session_mod.choose_providers("cpu", ["FooExecutionProvider"])


def test_one_provider_given_alone_is_a_list_of_one_not_its_letters(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "m")
    assert GistEncoder(folder, providers="CPUExecutionProvider").provider == "CPUExecutionProvider"
    paired = GistEncoder(folder, providers=("CPUExecutionProvider", {}))
    assert paired.provider == "CPUExecutionProvider"
    with pytest.raises(ProviderUnavailableError, match="'FooExecutionProvider'"):
        GistEncoder(folder, providers="FooExecutionProvider")
    with pytest.raises(ProviderUnavailableError, match="non-empty list"):
        GistEncoder(folder, providers=[])


def test_provider_options_onnx_runtime_would_reject_or_ignore_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Options ONNX Runtime cannot take are an error naming them, never a banner on stdout and
    a session that loads anyway (on the CPU, or without the option)."""
    import onnxruntime as ort

    folder = write_tiny_model(tmp_path / "m")
    shapes = {
        "options must be a dict": [("CPUExecutionProvider", ["a"])],  # ORT: banner, then CPU
        "is not a name with a string": [("CPUExecutionProvider", {"x": [1]})],
        "a name or a \\(name, options\\) pair": [("CPUExecutionProvider",)],
        "no option 'intra_op_num_threads'.*threads=N": [
            ("CPUExecutionProvider", {"intra_op_num_threads": "4"})  # ORT ignores it silently
        ],
    }
    for message, providers in shapes.items():
        with pytest.raises(ProviderUnavailableError, match=message):
            GistEncoder(folder, providers=providers)
    # Where ONNX Runtime itself rejects an option (as CUDA does a bad value) and falls back:
    real = ort.InferenceSession

    def rejecting(*args: Any, **kwargs: Any) -> Any:
        print("*************** EP Error ***************")
        print("EP Error [ONNXRuntimeError] : 2 : INVALID_ARGUMENT : bad device_id when using x")
        print("Falling back to ['CPUExecutionProvider'] and retrying.")
        return real(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", rejecting)
    with pytest.raises(ProviderUnavailableError, match=r"refused .* bad device_id"):
        GistEncoder(folder, providers=[("CPUExecutionProvider", {})])
    assert capsys.readouterr().out == ""  # no banner reached the caller's stdout


def test_an_empty_variant_is_refused_not_read_as_fp32(tmp_path: Path) -> None:
    from gist_onnx import ModelConfigError

    with pytest.raises(ModelConfigError, match="Unknown variant ''"):
        GistEncoder(write_tiny_model(tmp_path / "m"), variant="")


def test_installed_runtimes_sees_this_environment() -> None:
    assert "onnxruntime" in session_mod.installed_runtimes() or "onnxruntime-gpu" in (
        session_mod.installed_runtimes()
    )


def test_graph_with_unknown_inputs_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    folder = write_tiny_model(tmp_path / "m")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixel_values"], ["out"])],
        "odd",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["b", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "model.onnx"))
    with pytest.raises(ModelConfigError, match=r"takes inputs \['pixel_values'\]"):
        GistEncoder(folder)


def test_corrupt_graph_is_reported(tmp_path: Path) -> None:
    folder = write_tiny_model(tmp_path / "m")
    (folder / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelConfigError, match="could not load"):
        GistEncoder(folder)


def test_cpu_sessions_leave_skip_layer_norm_unfused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime

    seen: list[object] = []
    real = onnxruntime.InferenceSession

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("disabled_optimizers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)
    GistEncoder(write_tiny_model(tmp_path / "m"))
    assert seen == [["SkipLayerNormFusion"]]


@pytest.mark.model
def test_the_fp32_graph_keeps_its_layer_norms_apart_on_the_cpu(
    exported: Path, tmp_path: Path
) -> None:
    # The export leaves residual additions and layer norms unfused, and a CPU session with the
    # encoder's disabled optimizers keeps them so (ONNX Runtime fuses them at load otherwise:
    # if it renames that rewrite, this test sees SkipLayerNormalization come back).
    import onnx
    import onnxruntime as ort

    def ops(path: Path) -> set[str]:
        return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}

    assert "SkipLayerNormalization" not in ops(exported / "model.onnx")
    assert "LayerNormalization" in ops(exported / "model.onnx")
    for disabled, fused in ((list(device_mod.CPU_DISABLED_OPTIMIZERS), False), ([], True)):
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"loaded_{fused}.onnx")
        ort.InferenceSession(
            str(exported / "model.onnx"),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=disabled,
        )
        assert ("SkipLayerNormalization" in ops(tmp_path / f"loaded_{fused}.onnx")) is fused


SHORT = ["capital of France", "a", "how do I reset my password on the router in the hall"]


@pytest.mark.model
def test_the_replayed_graph_pads_one_text_into_fixed_buffers_exactly(exported: Path) -> None:
    """On the CPU the fixed (1, 32) buffers run without a CUDA graph: the padding and binding
    that the capture replays on a GPU give the usual session's vectors."""
    import numpy as np

    from gist_onnx.session import CPU, ReplayedGraph

    enc = GistEncoder(exported, cuda_graph=False)
    replay = ReplayedGraph(enc.files.graph, [CPU])
    for text in SHORT:
        batch = enc.tokenizer([text])
        assert replay.fits(batch)
        np.testing.assert_allclose(replay.run(batch), enc.session.run(batch), atol=1e-6)
    assert not replay.fits(enc.tokenizer(["word " * 40]))  # 42 tokens
    assert not replay.fits(enc.tokenizer(SHORT[:2]))  # two texts


@pytest.mark.model
def test_one_text_takes_the_replayed_graph_when_on_and_the_usual_path_when_it_fails(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    reference = GistEncoder(exported, cuda_graph=False)
    enc = GistEncoder(exported)
    assert not enc.engine.use_replay  # on the CPU it is off by default
    enc.engine.use_replay = True  # what CUDA turns on; on the CPU it runs without a capture
    texts = [*SHORT, "word " * 40]
    for text in texts:
        np.testing.assert_allclose(enc.encode([text]), reference.encode([text]), atol=1e-6)
    assert enc.engine.replay is not None
    np.testing.assert_allclose(enc.encode(texts), reference.encode(texts), atol=1e-6)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("capture failed")

    monkeypatch.setattr("gist_onnx.engine.ReplayedGraph", broken)
    failing = GistEncoder(exported)
    failing.engine.use_replay = True
    with pytest.warns(RuntimeWarning, match="capture failed"):
        out = failing.encode([SHORT[0]])
    np.testing.assert_allclose(out, reference.encode([SHORT[0]]), atol=1e-6)
    assert not failing.engine.use_replay  # tried once


@pytest.mark.model
@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_padding_to_a_multiple_leaves_the_model_s_vectors_as_they_were(
    exported: Path, variant: str
) -> None:
    """CUDA's runs are padded to a multiple of 8 tokens: through the real graphs (attention
    masked, pooling over the mask) the extra padding changes no vector."""
    import numpy as np

    from gist_onnx.export.texts import PARITY_TEXTS

    enc = GistEncoder(exported, variant=variant)
    plain = enc.encode(PARITY_TEXTS, batch_size=8)
    enc.tokenizer.pad_multiple = 8
    widths = {run.batch.input_ids.shape[1] for run in enc.engine.plan(iter(PARITY_TEXTS), 8)}
    assert all(w % 8 == 0 or w == enc.max_seq_length for w in widths)
    np.testing.assert_allclose(enc.encode(PARITY_TEXTS, batch_size=8), plain, atol=1e-5)
