"""``gist_onnx_manifest.json``: the one record of an export, written by the export and read by the
loader through the same :class:`Manifest` type, and the integrity check it makes possible.

The export writes every file's sha256 into the manifest; a flipped byte in the weights otherwise
loads without a word and gives vectors unrelated to the right ones. The manifest also records the
source (a hub repo id, or only a local folder's name: it ships in bundles and images), how the
graphs pool, the versions used and the parity figures measured against sentence-transformers.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ModelConfigError, ModelFilesError
from .layout import MANIFEST_FILE, ModelFiles, Parsed, files_read, parse_once

FORMAT = 1


@dataclass(frozen=True)
class Manifest:
    """What one export wrote. Read leniently (every field may be missing from a hand-made or
    older manifest); :class:`IntegrityCheck` says what it needs of one."""

    # Relative path -> sha256, for every file of the folder but the manifest; None if absent.
    files: dict[str, str] | None = None
    # {"model": repo id or None, "revision": ..., "folder": a local source's name}
    source: dict[str, Any] = field(default_factory=dict)
    # How the graphs were built: max_seq_length, pooling, normalize, dimension.
    config: dict[str, Any] = field(default_factory=dict)
    # Variant -> its file, recipe, check figures, thresholds, sha256 and bytes.
    graphs: dict[str, dict[str, Any]] = field(default_factory=dict)
    opset: int | None = None
    versions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    passed: bool | None = None
    format: int = FORMAT
    # Variant -> its web graph (transformers.js / onnxruntime-web): file, check figures.
    web: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, value: Any) -> Manifest:
        """A manifest from its parsed JSON; fields of the wrong type count as missing."""
        if not isinstance(value, dict):
            return cls()

        def table(key: str) -> dict[str, Any]:
            item = value.get(key)
            return item if isinstance(item, dict) else {}

        files = value.get("files")
        opset, passed, form = value.get("opset"), value.get("passed"), value.get("format")
        return cls(
            files=files if isinstance(files, dict) else None,
            source=table("source"),
            config=table("config"),
            graphs=table("graphs"),
            opset=opset if isinstance(opset, int) else None,
            versions=table("versions"),
            timings=table("timings"),
            passed=passed if isinstance(passed, bool) else None,
            format=form if isinstance(form, int) else FORMAT,
            web=table("web"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "source": self.source,
            "opset": self.opset,
            "config": self.config,
            "graphs": self.graphs,
            "files": self.files,
            "versions": self.versions,
            "timings": self.timings,
            "passed": self.passed,
            **({"web": self.web} if self.web else {}),
        }

    def write(self, folder: Path) -> Path:
        """Write the manifest into ``folder``; returns its path."""
        path = folder / MANIFEST_FILE
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path

    @property
    def source_model(self) -> str | None:
        """The hub repo id the export read, if it read one."""
        model = self.source.get("model")
        return model if isinstance(model, str) and model else None

    @property
    def pooling(self) -> str | None:
        """How the export's graphs pool (recorded since the export pools inside)."""
        value = self.config.get("pooling")
        return value if isinstance(value, str) else None

    @property
    def normalize(self) -> bool | None:
        """Whether the export's graphs normalize inside."""
        value = self.config.get("normalize")
        return value if isinstance(value, bool) else None


def read_manifest(folder: Path) -> Parsed:
    """The folder's :class:`Manifest` (a None value without one), or why it could not be read."""
    parsed = parse_once(folder / MANIFEST_FILE)
    if parsed.error is not None or parsed.value is None:
        return parsed
    return Parsed(Manifest.from_json(parsed.value))


def inside(name: Any) -> bool:
    """Whether a manifest entry names a file inside the folder: relative, no ``..``."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        return False
    path = PurePosixPath(name)
    parts = path.parts
    return bool(parts) and not path.is_absolute() and ".." not in parts and ":" not in parts[0]


class IntegrityCheck:
    """Check the files the encoder reads against the sha256 sums of the folder's manifest.

    :meth:`start` hashes on a thread (hashlib releases the GIL), so the check overlaps with the
    session load instead of adding to the cold start; :meth:`wait` raises what it found.
    Files the manifest lists but the folder lacks (a bundle ships one graph) are skipped; a
    folder without a manifest has nothing to check against.
    """

    def __init__(self, files: ModelFiles) -> None:
        self.files = files
        self.problem: str | None = None
        self._thread: threading.Thread | None = None

    def expected(self) -> list[tuple[Path, str]]:
        """The (file, sha256) pairs to check; raises if the manifest cannot vouch for the graph."""
        folder = self.files.folder
        path = folder / MANIFEST_FILE
        manifest: Manifest | None = self.files.manifest.get()
        if manifest is None:
            return []
        sums = manifest.files
        if sums is None:
            raise ModelConfigError(
                f"{path} has no 'files' table of sha256 sums; re-run the export, or delete the "
                "manifest to load the folder unchecked."
            )
        try:
            graph = self.files.graph.relative_to(folder).as_posix()
        except ValueError:  # a graph from another repo (the hub's companion graph)
            graph = None
        if graph is not None and graph not in sums:
            raise ModelFilesError(
                f"{self.files.graph} is not among the files {path} vouches for; it was not "
                "written by that export. Re-export the folder, or pass verify_files=False."
            )
        outside = [n for n in sums if not inside(n)]
        if outside:
            raise ModelFilesError(
                f"{path} lists {outside[0]!r}, a path outside the model folder: a manifest names "
                "the folder's own files only. Re-export the folder, or pass verify_files=False."
            )
        # Every file the encoder reads must be vouched for: a manifest that leaves the weights
        # (or a config) out would let them load unchecked.
        read = [
            p.relative_to(folder).as_posix()
            for p in files_read(self.files)
            if p != path and p.is_relative_to(folder)  # not the hub's companion graph
        ]
        unlisted = [name for name in read if name not in sums]
        if unlisted:
            raise ModelFilesError(
                f"{path} does not vouch for {', '.join(unlisted)}, which the encoder reads: the "
                "manifest was edited or belongs to another export. Re-export the folder, or pass "
                "verify_files=False."
            )
        chosen = set(read)
        pairs = []
        for name, digest in sums.items():
            if name.endswith((".onnx", ".onnx.data")) and name not in chosen:
                continue  # another variant's (or form's) graph: not read here
            if (folder / name).is_file():
                pairs.append((folder / name, str(digest)))
        return pairs

    def start(self) -> IntegrityCheck:
        """Start hashing on a background thread; returns self."""
        pairs = self.expected()
        if pairs:
            self._thread = threading.Thread(
                target=self._run, args=(pairs,), name="gist-onnx-verify", daemon=True
            )
            self._thread.start()
        return self

    def _run(self, pairs: list[tuple[Path, str]]) -> None:
        bad = []
        for path, digest in pairs:
            name = path.relative_to(self.files.folder).as_posix()
            try:
                found = sha256(path)
            except OSError as exc:
                bad.append(f"{name} ({exc.strerror or exc})")
                continue
            if found != digest:
                bad.append(name)
        if bad:
            self.problem = (
                f"{', '.join(bad)} in {self.files.folder} "
                f"{'does' if len(bad) == 1 else 'do'} not match the sha256 in {MANIFEST_FILE}: "
                "the file is corrupted or was replaced. Copy or download the folder again, or "
                "re-export it."
            )

    def wait(self) -> None:
        """Wait for the check; raises :class:`ModelFilesError` naming every mismatched file."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.problem is not None:
            raise ModelFilesError(self.problem)


def verify_folder(folder: Path) -> tuple[int, list[str]]:
    """Check every file ``folder``'s manifest lists, the web export's included (which no encoder
    reads, so no load checks them), against its sha256; returns how many matched and what did
    not ('name: missing' or 'name: changed'). Raises :class:`ModelFilesError` without a
    manifest."""
    manifest: Manifest | None = read_manifest(folder).get()
    if manifest is None or manifest.files is None:
        raise ModelFilesError(
            f"{folder} has no {MANIFEST_FILE} with a table of sha256 sums to check against; "
            "export the folder with `gist-onnx export`."
        )
    matched, problems = 0, []
    for name, digest in sorted(manifest.files.items()):
        path = folder / name
        if not inside(name):
            problems.append(f"{name}: outside the folder")
        elif not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256(path) != digest:
            problems.append(f"{name}: changed")
        else:
            matched += 1
    return matched, problems


def sha256(path: Path) -> str:
    """A file's sha256 as hex, read a MiB at a time into one buffer."""
    import hashlib

    digest = hashlib.sha256()
    block = bytearray(1 << 20)
    view = memoryview(block)
    with path.open("rb", buffering=0) as handle:
        while size := handle.readinto(block):
            digest.update(view[:size])
    return digest.hexdigest()


def files_identity(
    files: ModelFiles, variant: str, *, verified: bool = False, settings: str = ""
) -> str:
    """A short digest naming exactly these model files as loaded, this variant and ``settings``
    (what the encoder read from the configs). A file is named by its sha256 in the manifest only
    where ``verified`` (the files were checked against it at load); else by its resolved path,
    size, inode and modification and change times, which an edit in place changes even when it
    keeps the size and sets the modification time back. Two encoders share it only when they
    would give the same vectors."""
    import hashlib

    manifest: Manifest | None = files.manifest.value if files.manifest.error is None else None
    sums = (manifest.files if isinstance(manifest, Manifest) and verified else None) or {}
    parts = [variant, settings]
    for path in files_read(files):
        try:
            name = path.relative_to(files.folder).as_posix()
        except ValueError:
            name = None
        if name is not None and name in sums:
            parts.append(f"{name}={sums[name]}")
        else:
            stat = path.stat()
            parts.append(
                f"{path.resolve()}:{stat.st_size}:{stat.st_ino}:{stat.st_mtime_ns}:"
                f"{stat.st_ctime_ns}"
            )
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:32]
