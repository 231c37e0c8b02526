"""Unit tier: the public surface is small and pinned."""

from __future__ import annotations

import gist_onnx


def test_all_is_pinned() -> None:
    assert sorted(gist_onnx.__all__) == sorted(
        [
            "GistEncoder",
            "GistOnnxError",
            "InvalidInputError",
            "MissingExtraError",
            "ModelConfigError",
            "ModelFilesError",
            "ProviderUnavailableError",
            "__version__",
        ]
    )


def test_errors_share_one_root_and_refine_builtins() -> None:
    for name in (
        "InvalidInputError",
        "MissingExtraError",
        "ModelConfigError",
        "ModelFilesError",
        "ProviderUnavailableError",
    ):
        assert issubclass(getattr(gist_onnx, name), gist_onnx.GistOnnxError)
    assert issubclass(gist_onnx.ModelFilesError, FileNotFoundError)
    assert issubclass(gist_onnx.ModelConfigError, ValueError)
    assert issubclass(gist_onnx.InvalidInputError, TypeError)
    assert issubclass(gist_onnx.ProviderUnavailableError, RuntimeError)
    assert issubclass(gist_onnx.MissingExtraError, ImportError)


def test_version_matches_the_installed_distribution() -> None:
    import importlib.metadata

    assert gist_onnx.__version__ == importlib.metadata.version("gist-onnx")
