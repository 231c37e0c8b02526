"""Unit tier: the public surface is small and pinned."""

from __future__ import annotations

import gist_onnx


def test_all_is_pinned() -> None:
    assert sorted(gist_onnx.__all__) == sorted(
        [
            "AsyncGistEncoder",
            "EmbeddingCache",
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


def test_every_exception_gist_onnx_defines_is_under_the_one_root() -> None:
    """One tree (drawn in errors.py): each exception class of every module derives from
    GistOnnxError and also from the builtin it refines, and the drawing names it."""
    import importlib
    import inspect
    import pkgutil

    import gist_onnx
    from gist_onnx import errors

    found = []
    for module_info in pkgutil.walk_packages(gist_onnx.__path__, "gist_onnx."):
        if module_info.name.endswith("__main__"):  # runs the command when imported
            continue
        try:
            module = importlib.import_module(module_info.name)
        except ImportError:  # an adapter whose framework is not installed
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                found.append(cls)
    assert len(found) >= 10
    for cls in found:
        assert issubclass(cls, gist_onnx.GistOnnxError), cls
        builtin = [b for b in cls.__mro__ if b.__module__ == "builtins" and b is not object]
        assert builtin[0] is not Exception or cls is gist_onnx.GistOnnxError, cls
        assert cls.__name__ in (errors.__doc__ or ""), cls
