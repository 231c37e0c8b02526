"""Every setting gist-onnx takes from the environment, read here and nowhere else.

| variable | read by | what it sets | default |
|---|---|---|---|
| ``GIST_ONNX_MODEL`` | Lambda handler | the model folder | ``model/`` in the function's code |
| ``GIST_ONNX_VARIANT`` | Lambda handler | ``int8``, ``fp32``, ``fp16`` | int8 where there is one |
| ``GIST_ONNX_THREADS`` | Lambda handler | ONNX Runtime's CPU threads | one per usable CPU |
| ``GIST_ONNX_MODEL_NAME`` | Lambda handler | the ``model`` responses report | the model's name |
| ``GIST_ONNX_VERIFY_FILES`` | Lambda handler | ``0`` skips the manifest's sha256 check | ``1`` |
| ``GIST_ONNX_LAZY`` | Lambda handler | set: load at the first request, not at init | unset |
| ``GIST_ONNX_API_KEY`` | Lambda handler, ``gist-onnx serve`` | required bearer key | none |
| ``GIST_ONNX_INT8_FORM`` | every ``GistEncoder`` | ``u8s8``, ``u8u8``, ``auto`` | ``auto`` |

``gist-onnx serve`` takes everything else as command-line options (``--api-key`` wins over the
variable). Variables of other tools are left to them: ``HF_HUB_OFFLINE``, ``HF_HUB_CACHE`` and
``HF_ENDPOINT`` (huggingface_hub), ``LAMBDA_TASK_ROOT`` and ``AWS_LAMBDA_RUNTIME_API`` (Lambda),
``ORT_DISABLE_TELEMETRY`` (ONNX Runtime; the handler sets it to 1 unless it is set).

Each accessor reads the environment when called, so a value set after import counts.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelConfigError

# Name -> what it sets: the table above, for the docs and the test that keeps them in step.
VARIABLES = {
    "GIST_ONNX_MODEL": "the model folder",
    "GIST_ONNX_VARIANT": "the graph variant",
    "GIST_ONNX_THREADS": "ONNX Runtime's CPU threads",
    "GIST_ONNX_MODEL_NAME": "the model name responses report",
    "GIST_ONNX_VERIFY_FILES": "0 skips the manifest check",
    "GIST_ONNX_LAZY": "load at the first request",
    "GIST_ONNX_API_KEY": "the required bearer key",
    "GIST_ONNX_INT8_FORM": "the int8 graph's products",
}


def _get(name: str) -> str | None:
    """The variable's value, None when unset or empty."""
    return os.environ.get(name) or None


# Set by ``python -m gist_onnx.serverless --model`` for the local invocation it makes.
MODEL = "GIST_ONNX_MODEL"


def model() -> Path | None:
    """``GIST_ONNX_MODEL``: the model folder."""
    value = _get(MODEL)
    return Path(value) if value else None


# Set by ``gist-onnx bundle`` for the smoke test it runs the handler in.
VARIANT = "GIST_ONNX_VARIANT"


def variant() -> str | None:
    """``GIST_ONNX_VARIANT``: the graph variant to run."""
    return _get(VARIANT)


def threads() -> int | None:
    """``GIST_ONNX_THREADS`` as a positive int; None (one per usable CPU) when unset."""
    configured = os.environ.get("GIST_ONNX_THREADS", "").strip()
    if not configured:
        return None
    try:
        count = int(configured)
    except ValueError:
        count = 0
    if count < 1:
        raise ModelConfigError(
            f"GIST_ONNX_THREADS must be a positive integer (ONNX Runtime's CPU threads), got "
            f"{configured!r}; unset it for one thread per CPU the function may use."
        )
    return count


def model_name() -> str | None:
    """``GIST_ONNX_MODEL_NAME``: the ``model`` reported in responses."""
    return _get("GIST_ONNX_MODEL_NAME")


def verify_files() -> bool:
    """``GIST_ONNX_VERIFY_FILES``: False only when set to ``0``."""
    return os.environ.get("GIST_ONNX_VERIFY_FILES", "1") != "0"


def lazy() -> bool:
    """``GIST_ONNX_LAZY``: whether it is set at all (any value)."""
    return "GIST_ONNX_LAZY" in os.environ


def api_key() -> str | None:
    """``GIST_ONNX_API_KEY``: the bearer key requests must send (see :func:`checked_api_key`);
    None when unset or empty."""
    return checked_api_key(_get("GIST_ONNX_API_KEY"), "GIST_ONNX_API_KEY")


def checked_api_key(value: str | None, source: str) -> str | None:
    """An API key as configured, checked once at start: the whitespace around it dropped (a key
    read from a secret file ends in a newline, which no client sends), and a key that is only
    whitespace or holds whitespace or control characters refused, since no request could ever
    match it. None stays None (no key: nothing is checked)."""
    if value is None:
        return None
    key = value.strip()
    if not key:
        raise ModelConfigError(
            f"{source} is set but holds only whitespace: set the key itself, or unset it to "
            "serve without one."
        )
    bad = next((i for i, c in enumerate(key) if c.isspace() or not c.isprintable()), None)
    if bad is not None:
        raise ModelConfigError(
            f"{source} holds {key[bad]!r} at character {bad + 1}: a bearer key is one token "
            "without spaces or control characters (clients send 'Authorization: Bearer <key>'). "
            "Fix the key or the file it is read from."
        )
    return key


def in_lambda() -> bool:
    """Whether this process was started by the Lambda runtime (``AWS_LAMBDA_RUNTIME_API``)."""
    return "AWS_LAMBDA_RUNTIME_API" in os.environ


def lambda_task_root() -> Path | None:
    """Lambda's ``LAMBDA_TASK_ROOT``: where the function's code lies."""
    value = _get("LAMBDA_TASK_ROOT")
    return Path(value) if value else None


def int8_form() -> str | None:
    """``GIST_ONNX_INT8_FORM``: the int8 graph's products (``u8s8``, ``u8u8``; ``auto`` or
    unset: chosen per CPU). Checked by :func:`gist_onnx.device.choose_int8_form`."""
    value = _get("GIST_ONNX_INT8_FORM")
    return value.strip().lower() if value else None
