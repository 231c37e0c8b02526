"""The runtime's packages in a bundle: installed for the target platform (:class:`Target`), pruned
of what the runtime never imports (:data:`PRUNED`, each with its reason) and compiled to
``.pyc`` for the target's Python. :mod:`.bundle` zips what this leaves.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import GistOnnxError

ARCHES = ("x86_64", "aarch64")
# The glibc of each Lambda Python runtime's Amazon Linux.
LAMBDA_GLIBC = {"3.10": "2.26", "3.11": "2.26", "3.12": "2.34", "3.13": "2.34", "3.14": "2.34"}
DEFAULT_PYTHON = "3.12"
# The runtime's requirements that a bundle leaves out: the model ships inside it.
NOT_BUNDLED = ("huggingface-hub", "huggingface_hub")

# What the bundle removes, relative to the packages folder, and why. A pattern ending in "/" is a
# folder. Checked by running the bundle: the tests invoke the handler from a pruned bundle.
PRUNED: tuple[tuple[str, str], ...] = (
    (
        "onnxruntime/capi/libonnxruntime.so*",
        "ONNX Runtime's C API library, for C/C++ users; the Python extension "
        "(onnxruntime_pybind11_state) has the runtime linked in and never loads it",
    ),
    (
        "onnxruntime/transformers/",
        "offline graph tooling (the BERT optimizer, fp16 conversion): the export's, never imported "
        "to run a graph",
    ),
    ("onnxruntime/quantization/", "the quantizer: used by the export only"),
    ("onnxruntime/tools/", "converters and offline utilities, never imported at run time"),
    ("onnxruntime/datasets/", "sample models for ONNX Runtime's own examples"),
    ("onnxruntime/backend/", "the ONNX backend-test adapter, not imported by `import onnxruntime`"),
    ("numpy/f2py/", "the Fortran wrapper generator"),
    ("numpy/distutils/", "build tooling for C extensions (gone from numpy for Python 3.12+)"),
    ("numpy/_core/include/", "C headers, for building extensions against numpy"),
    ("numpy/_core/lib/", "static libraries and pkg-config files, for building extensions"),
    ("numpy/random/lib/", "a static library, for building extensions"),
    ("numpy/_pyinstaller/", "PyInstaller hooks"),
    ("numpy/**/tests/", "numpy's test suites"),
    ("numpy/_core/_*_tests.*.so", "C extensions that only numpy's test suites load"),
    ("numpy/_core/_simd.*", "SIMD dispatch tests, loaded only by numpy's test suite"),
    ("tokenizers/tools/", "the tokenizer visualizer for notebooks"),
    ("gist_onnx/export/", "the export tool: needs torch, never imported by the runtime"),
    ("gist_onnx/serve/", "the HTTP server: a function is served by its handler instead"),
    ("gist_onnx/integrations/", "framework adapters: their frameworks are not in a bundle"),
    ("**/*.pyi", "type stubs, read by type checkers only"),
    ("**/*.pxd", "Cython declarations, for building extensions"),
    ("**/__pycache__/", "bytecode of the build machine's Python; compiled again for the target"),
    ("bin/", "console scripts, which a function never runs"),
)


class BundleError(GistOnnxError, RuntimeError):
    """A bundle could not be built; the message says what failed and what to do."""


@dataclass(frozen=True)
class Target:
    """The platform a bundle is built for."""

    python: str
    arch: str
    glibc: str

    @property
    def platform_tags(self) -> list[str]:
        """Every manylinux tag a wheel may carry to run on this target's glibc."""
        major, minor = (int(x) for x in self.glibc.split("."))
        tags = [f"manylinux_{major}_{m}_{self.arch}" for m in range(17, minor + 1)]
        return [*tags, f"manylinux2014_{self.arch}"]

    @property
    def runs_here(self) -> bool:
        """Whether this interpreter can run the target: same Python and architecture, enough
        glibc."""
        return (
            f"{sys.version_info.major}.{sys.version_info.minor}" == self.python
            and self.platform_runs_here
        )

    @property
    def platform_runs_here(self) -> bool:
        """Whether this machine can run the target's wheels (architecture and glibc), given an
        interpreter of the target's Python (:func:`find_python`)."""
        here_glibc = platform.libc_ver()[1] or "0.0"
        return platform.machine() == self.arch and _version(here_glibc) >= _version(self.glibc)


def find_python(version: str, given: str | None = None) -> str | None:
    """An interpreter of Python ``version`` (``3.12``): ``given``, this one, ``python3.12`` on
    PATH, or one installed by pyenv or uv under the home folder; None if none answers as that
    version (a pyenv shim for a version not selected does not)."""
    import glob

    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [given] if given else []
    if here == version:
        candidates.append(sys.executable)
    candidates.append(shutil.which(f"python{version}") or "")
    home = Path.home()
    for pattern in (
        f".pyenv/versions/{version}.*/bin/python{version}",
        f".local/share/uv/python/cpython-{version}.*/bin/python{version}",
    ):
        candidates += sorted(glob.glob(str(home / pattern)), reverse=True)
    for candidate in filter(None, candidates):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.stdout.strip() == version:
            return candidate
    return None


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split("."))
    except ValueError:
        return (0,)


def target(arch: str, python: str, glibc: str | None) -> Target:
    if arch not in ARCHES:
        raise BundleError(f"--arch {arch!r}: choose x86_64 or aarch64 (Lambda's arm64).")
    parts = python.split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or parts[0] != "3":
        raise BundleError(f"--python {python!r}: give a version such as 3.12.")
    if glibc is None:
        if python not in LAMBDA_GLIBC:
            raise BundleError(
                f"Lambda has no python{python} runtime that gist-onnx knows; choose one of "
                f"{', '.join(LAMBDA_GLIBC)} or give --glibc for another Linux."
            )
        glibc = LAMBDA_GLIBC[python]
    if len(_version(glibc)) != 2 or _version(glibc) < (2, 17):
        raise BundleError(f"--glibc {glibc!r}: give a version such as 2.34 (2.17 or later).")
    return Target(python=python, arch=arch, glibc=glibc)


def runtime_requirements() -> list[str]:
    """The runtime's requirements, as this gist-onnx declares them, less huggingface-hub."""
    import importlib.metadata
    import re

    try:
        declared = importlib.metadata.requires("gist-onnx") or []
    except importlib.metadata.PackageNotFoundError:
        raise BundleError(
            "gist-onnx's metadata is missing: install it (pip install -e . in a clone) so the "
            "bundle knows which runtime versions to install."
        ) from None
    out = []
    for requirement in declared:
        if "extra ==" in requirement:
            continue
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
        if name.lower().replace("_", "-") not in NOT_BUNDLED:
            out.append(requirement.split(";")[0].strip())
    return out


def install_runtime(target_dir: Path, target: Target, pip_args: tuple[str, ...]) -> dict[str, str]:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-compile",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        target.python,
        "--target",
        str(target_dir),
        *(arg for tag in target.platform_tags for arg in ("--platform", tag)),
        *pip_args,
        *runtime_requirements(),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
        hint = ""
        if target.glibc == "2.26":
            hint = (
                f" Lambda's python{target.python} runs on Amazon Linux 2 (glibc 2.26), for which "
                "onnxruntime publishes no current wheel: use --python 3.12 or later."
            )
        raise BundleError(
            f"pip could not install the runtime for Python {target.python} on {target.arch} "
            f"(glibc {target.glibc}): {' '.join(errors) or proc.stderr.strip()[-300:]}.{hint}"
        )
    versions = {}
    for info in sorted(target_dir.glob("*.dist-info")):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        versions[name] = version
    return versions


def copy_package(destination: Path) -> None:
    source = Path(__file__).resolve().parents[1]  # the gist_onnx package
    shutil.copytree(
        source, destination, ignore=shutil.ignore_patterns("__pycache__", "export", "*.pyc")
    )


def _matches(root: Path, pattern: str) -> Iterator[Path]:
    folder = pattern.endswith("/")
    for path in sorted(root.glob(pattern.rstrip("/"))):
        if folder == path.is_dir():
            yield path


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def prune(root: Path) -> dict[str, int]:
    removed: dict[str, int] = {}
    for pattern, _reason in PRUNED:
        total = 0
        for path in list(_matches(root, pattern)):
            if not path.exists():  # inside a folder removed by an earlier match
                continue
            total += _size(path)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        removed[pattern] = total
    return removed


def compile_bytecode(root: Path, target: Target, candidate: str | None) -> str:
    """Compile .pyc files with ``candidate``, an interpreter of the target's version
    (:func:`find_python`), if one is at hand."""
    if candidate is not None:
        subprocess.run(
            [
                candidate,
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                "--invalidation-mode",
                "unchecked-hash",
                str(root),
            ],
            capture_output=True,
            check=False,
        )
        return f"compiled with Python {target.python} (unchecked-hash)"
    return (
        f"not compiled: no Python {target.python} found (pass --compile-with PATH); every cold "
        "start will compile the modules it imports"
    )
