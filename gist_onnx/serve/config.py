"""One options object for the server: :class:`ServeConfig`, which :func:`gist_onnx.serve.serve`,
:func:`gist_onnx.serve.app.create_app` and ``gist-onnx serve`` share. The command's flags are
generated from its fields (and :class:`~gist_onnx.wire.Limits`'): each field's metadata names its
flag and help, so a new setting is one field."""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from ..argtypes import count, flag, lengths, milliseconds, non_negative, port
from ..cache import DEFAULT_BYTES, DEFAULT_ENTRIES
from ..encoder import WARM_UP_LENGTHS
from ..errors import InvalidInputError
from ..wire import Limits


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``gist-onnx serve`` takes, checked when made.

    ``warm_up``: the token lengths run before ``/health/ready`` says ready (``()``: the encoder's
    defaults; None: no warm-up). ``drain_delay_s``: after SIGTERM, keep serving (and answering
    ``/health/ready`` with 503) this long before closing the port. ``served_model_names``: the
    ``model`` values requests may name (the first is reported; default: the model's id).
    ``cache_entries`` (0: none) and ``cache_bytes`` bound the exact cache of vectors."""

    model: str | os.PathLike[str] | None = field(
        default=None,
        metadata=flag("--model", required=True, help="model folder (or hub repo id)"),
    )
    variant: str | None = field(
        default=None, metadata=flag("--variant", help="fp32 (default), int8 or fp16")
    )
    device: str = field(
        default="cpu", metadata=flag("--device", help="cpu (default), cuda or auto")
    )
    threads: int | None = field(
        default=None, metadata=flag("--threads", type=count, help="ONNX Runtime threads")
    )
    host: str = field(
        default="127.0.0.1", metadata=flag("--host", help="address to listen on (127.0.0.1)")
    )
    port: int = field(default=8080, metadata=flag("--port", type=port, help="port (8080)"))
    api_key: str | None = field(
        default=None,
        metadata=flag(
            "--api-key", help="require 'Authorization: Bearer KEY' (or GIST_ONNX_API_KEY)"
        ),
    )
    served_model_names: tuple[str, ...] | None = field(
        default=None,
        metadata=flag(
            "--served-model-name",
            "--model-name",
            action="append",
            metavar="NAME",
            help="a model id requests may name (repeatable; the first is the one responses "
            "report; default: the export's model id)",
        ),
    )
    any_model: bool = field(
        default=False,
        metadata=flag(
            "--any-model",
            action="store_true",
            help="accept any 'model' in a request (default: 404 model_not_found for an unknown "
            "one)",
        ),
    )
    cache_entries: int = field(
        default=DEFAULT_ENTRIES,
        metadata=flag(
            "--cache-size",
            type=non_negative,
            help=f"texts the exact cache holds ({DEFAULT_ENTRIES:,}; 0: no cache)",
        ),
    )
    cache_bytes: int = field(
        default=DEFAULT_BYTES,
        metadata=flag(
            "--cache-bytes",
            type=count,
            help=f"bytes the cache's entries may take ({DEFAULT_BYTES // 2**20} MiB)",
        ),
    )
    warm_up: tuple[int, ...] | None = field(
        default=(),
        metadata=flag(
            "--warm-up-lengths",
            type=lengths,
            metavar="N,N,...",
            cli_default=WARM_UP_LENGTHS,  # GistEncoder.warm_up's own, as () means
            off="--no-warm-up",
            off_help="ready at once, no warm-up",
            help="token lengths run once at start-up, before /health/ready says ready "
            f"({','.join(map(str, WARM_UP_LENGTHS))})",
        ),
    )
    otel: bool = field(
        default=False,
        metadata=flag(
            "--otel",
            action="store_true",
            help="OpenTelemetry spans per request (needs gist-onnx[otel]; run under "
            "opentelemetry-instrument, or configure a tracer provider, to export them)",
        ),
    )
    drain_delay_s: float = field(
        default=0.0,
        metadata=flag(
            "--drain-delay",
            type=milliseconds,
            metavar="SECONDS",
            help="after SIGTERM, keep serving (with /health/ready 503) this long before closing "
            "the port (0; 5 suits Kubernetes)",
        ),
    )
    limits: Limits = field(default_factory=Limits)  # its fields carry their own flags
    batching: bool = field(
        default=True,
        metadata=flag(
            "--no-batching", invert=True, help="one request per graph run (for comparison)"
        ),
    )
    access_log: bool = field(
        default=True, metadata=flag("--quiet", invert=True, help="no access log")
    )
    graceful_timeout_s: int = 30  # seconds the drain waits for requests in flight; no flag
    model_name: str | None = None  # the reported name without served_model_names; no flag

    def __post_init__(self) -> None:
        names = self.served_model_names
        if names is not None:
            if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
                raise InvalidInputError(
                    f"served_model_names must be a list of non-empty names, got {names!r}."
                )
            object.__setattr__(self, "served_model_names", tuple(names))
        if self.warm_up is not None:
            object.__setattr__(self, "warm_up", tuple(self.warm_up))
        if (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not (0 <= self.port <= 65535)
        ):
            raise InvalidInputError(f"port must be an integer from 0 to 65535, got {self.port!r}.")
        if not isinstance(self.limits, Limits):
            raise InvalidInputError(f"limits must be a Limits, got {type(self.limits).__name__}.")

    def replace(self, **changes: Any) -> ServeConfig:
        """This config with ``changes`` (field names), checked again."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"ServeConfig has no setting {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """The flags of every field that has one (``limits``: each of Limits' fields), each
        parsed into the name argparse gives its first flag (``--drain-delay``: ``drain_delay``)."""
        for spec in _flagged():
            meta = dict(spec.metadata)
            names, help_text = meta.pop("flags"), meta.pop("help")
            off, off_help = meta.pop("off", None), meta.pop("off_help", None)
            default = meta.pop("cli_default", spec.default)
            if meta.pop("invert", False):
                meta["action"] = "store_true"
                default = False
            parser.add_argument(
                *names, dest=_dest(names[0]), default=default, help=help_text, **meta
            )
            if off:
                parser.add_argument(off, dest=_dest(off), action="store_true", help=off_help)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeConfig:
        """The config the flags parsed into ``args`` say."""
        limit_names = {f.name for f in dataclasses.fields(Limits)}
        top: dict[str, Any] = {}
        limits: dict[str, Any] = {}
        for spec in _flagged():
            value = getattr(args, _dest(spec.metadata["flags"][0]))
            if spec.metadata.get("invert"):
                value = not value
            off = spec.metadata.get("off")
            if off and getattr(args, _dest(off)):
                value = None
            (limits if spec.name in limit_names else top)[spec.name] = value
        return cls(**top, limits=Limits(**limits))


def _dest(flag_name: str) -> str:
    return flag_name.lstrip("-").replace("-", "_")


def _flagged() -> list[dataclasses.Field[Any]]:
    """Each field with a flag: ServeConfig's, then Limits', in declaration order."""
    fields = [*dataclasses.fields(ServeConfig), *dataclasses.fields(Limits)]
    return [f for f in fields if "flags" in f.metadata]
