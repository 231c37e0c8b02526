"""SIGTERM handled as Ctrl-C is: the commands that write files (``embed``, ``export``) clean up
their partial outputs on both.

``timeout``, systemd, Kubernetes and CI runners stop a process with SIGTERM, whose default action
kills it at once: no ``finally`` runs and a half-written output stays behind. Raising
``SystemExit`` from the handler unwinds the main thread as Ctrl-C's ``KeyboardInterrupt`` does.
"""

from __future__ import annotations

import glob
import os
import signal
from pathlib import Path
from types import FrameType

# Exit status of a process ended by SIGTERM, as shells report it.
SIGTERM_STATUS = 128 + signal.SIGTERM


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(SIGTERM_STATUS)


def exit_on_sigterm() -> None:
    """From now on, SIGTERM raises ``SystemExit(143)`` in the main thread (a no-op elsewhere)."""
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)


def partial_name(target: Path, kind: str = "partial") -> str:
    """The prefix of a hidden partial output of ``target``, naming this process:
    ``.<name>.<kind>-<pid>-`` (a random tail follows), so a later run can tell whether the
    process that wrote it is gone."""
    return f".{target.name}.{kind}-{os.getpid()}-"


def stale_partials(target: Path, kind: str = "partial") -> list[Path]:
    """Partial outputs of ``target`` (named by :func:`partial_name`) whose process has ended:
    left by a run that was killed (SIGKILL, a power cut), safe to remove."""
    prefix = f".{target.name}.{kind}-"
    stale = []
    for path in target.parent.glob(f"{glob.escape(prefix)}*"):
        pid, _, _ = path.name[len(prefix) :].partition("-")
        if pid.isdigit() and not _alive(int(pid)):
            stale.append(path)
    return stale


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True
