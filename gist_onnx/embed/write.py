"""Writing ``gist-onnx embed``'s outputs: vectors as .npy (with ``<output>.ids.npy``), jsonl or
parquet, under hidden partial names until the run is complete (:class:`Outputs`)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

from ..errors import InvalidInputError, MissingExtraError
from ..interrupt import partial_name, stale_partials


class NpyWriter:
    """Rows appended to a .npy file whose header is rewritten with the row count at the end."""

    HEADER = 128  # bytes: magic, version, length and the padded dict (room for any row count)

    def __init__(self, handle: IO[bytes], dim: int) -> None:
        self.handle, self.dim, self.rows = handle, dim, 0
        handle.write(b"\0" * self.HEADER)

    def write(self, ids: list[int], vectors: npt.NDArray[np.float32]) -> None:
        self.handle.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        self.rows += len(vectors)

    def close(self) -> None:
        header = repr({"descr": "<f4", "fortran_order": False, "shape": (self.rows, self.dim)})
        body = header.encode("latin1")
        padding = self.HEADER - 10 - len(body) - 1
        self.handle.seek(0)
        self.handle.write(b"\x93NUMPY\x01\x00" + (self.HEADER - 10).to_bytes(2, "little"))
        self.handle.write(body + b" " * padding + b"\n")


class JsonlWriter:
    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle

    def write(self, ids: list[int], vectors: npt.NDArray[np.float32]) -> None:
        lines = (
            json.dumps({"id": i, "embedding": v}, separators=(",", ":"))
            for i, v in zip(ids, vectors.tolist(), strict=True)
        )
        self.handle.write(("\n".join(lines) + "\n").encode())

    def close(self) -> None:
        self.handle.flush()


class ParquetWriter:
    def __init__(self, path: str, dim: int) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise MissingExtraError("Writing parquet", "files", "pyarrow") from None
        self.pa = pa
        self.schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float32(), dim))])
        self.writer = pq.ParquetWriter(path, self.schema)

    def write(self, ids: list[int], vectors: npt.NDArray[np.float32]) -> None:
        pa = self.pa
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
        column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
        self.writer.write_table(pa.table([pa.array(ids, pa.int64()), column], schema=self.schema))

    def close(self) -> None:
        self.writer.close()


class Outputs:
    """The files a run writes, under hidden partial names until :meth:`commit` renames them into
    place: the vectors and, for .npy, ``<output>.ids.npy`` (each row's id), always together.

    Checked before any text is encoded (a folder, a missing or read-only folder, the input
    itself), so that a mistake costs nothing. Partial outputs that a killed run left are
    removed first; committed files get the modes the umask gives, as any new file.
    """

    def __init__(self, target: Path, fmt: str, source: str) -> None:
        self.target = target
        self.ids_target = target.with_name(target.name + ".ids.npy") if fmt == "npy" else None
        for path in (target, self.ids_target):
            if path is not None and path.is_dir():
                raise InvalidInputError(f"The output {path} is a folder; name a file in it.")
        if source != "-" and target.exists() and target.resolve() == Path(source).resolve():
            raise InvalidInputError(f"The output {target} is the input; name another file.")
        folder = target.parent
        if not folder.is_dir():
            raise InvalidInputError(f"The output's folder {folder} does not exist; create it.")
        for path in (target, self.ids_target):
            if path is not None:
                for stale in stale_partials(path):
                    stale.unlink(missing_ok=True)
        self.vectors = self._reserve(target)
        self.ids = self._reserve(self.ids_target) if self.ids_target is not None else None

    def _reserve(self, target: Path) -> Path:
        try:
            fd, name = tempfile.mkstemp(
                prefix=partial_name(target), suffix=".partial", dir=target.parent
            )
        except OSError as exc:
            self.discard()
            raise InvalidInputError(
                f"Cannot write into {target.parent}: {exc.strerror or exc}. Pick an output "
                "folder you can write to."
            ) from None
        os.close(fd)
        return Path(name)

    def commit(self, ids: list[int]) -> None:
        """Rename the finished outputs into place: the ids first, then the vectors, one right
        after the other, so the pair is never left half replaced by a failed run."""
        mode = 0o666 & ~_umask()
        if self.ids is not None and self.ids_target is not None:
            with self.ids.open("wb") as handle:
                np.save(handle, np.asarray(ids, dtype=np.int64))
            self.ids.chmod(mode)
        self.vectors.chmod(mode)
        if self.ids is not None and self.ids_target is not None:
            self.ids.replace(self.ids_target)
        self.vectors.replace(self.target)

    def discard(self) -> None:
        """Remove the partial outputs (a failed or interrupted run)."""
        for path in (getattr(self, "vectors", None), getattr(self, "ids", None)):
            if path is not None:
                path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
