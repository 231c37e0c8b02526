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


def stop_handler() -> object:
    """The handler :func:`exit_on_sigterm` installs (to tell whether it is the one in place)."""
    return _stop


def exit_on_sigterm() -> None:
    """From now on, SIGTERM raises ``SystemExit(143)`` in the main thread (a no-op elsewhere)."""
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)


def partial_name(target: Path, kind: str = "partial") -> str:
    """The prefix of a hidden partial output of ``target``, naming the process that writes it:
    ``.<name>.<kind>-<pid>-<start>-<host>-`` (a random tail follows), where ``start`` is when the
    process started (clock ticks since boot, 0 where the system does not say) and ``host`` a
    short digest of the host name. A later run can then tell whether that process is gone, even
    where a process id comes back: a container's command is always PID 1."""
    pid = os.getpid()
    return f".{target.name}.{kind}-{pid}-{_started(pid)}-{_host()}-"


def stale_partials(target: Path, kind: str = "partial") -> list[Path]:
    """Partial outputs of ``target`` (named by :func:`partial_name`) whose process has ended:
    left by a run that was killed (SIGKILL, an OOM kill, a power cut), safe to remove. A partial
    written on another host (another container sharing the folder) is left alone."""
    prefix = f".{target.name}.{kind}-"
    stale = []
    for path in target.parent.glob(f"{glob.escape(prefix)}*"):
        if _ended(path.name[len(prefix) :]):
            stale.append(path)
    return stale


def _ended(tail: str) -> bool:
    """Whether the process a partial's name records (``<pid>-<start>-<host>-...``, or the
    ``<pid>-...`` of earlier versions) has ended."""
    parts = tail.split("-", 3)
    if not parts[0].isdigit():
        return False
    pid = int(parts[0])
    recorded = len(parts) == 4 and parts[1].isdigit() and len(parts[2]) == 8
    if not recorded:
        # An earlier version's name: this process never writes one, so with its own id it was
        # another process's (a container's PID 1 before a restart).
        return pid == os.getpid() or not _alive(pid)
    start, host = int(parts[1]), parts[2]
    if host != _host():
        return False  # another machine's or container's process: nothing to tell here
    if pid == os.getpid():
        return start != _started(pid)  # the id came back: this process did not write it
    if not _alive(pid):
        return True
    now = _started(pid)
    return bool(start and now and now != start)  # the id was reused by a later process


def _started(pid: int) -> int:
    """When process ``pid`` started, in clock ticks since boot (Linux); 0 where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else 0


def _host() -> str:
    """A short digest of this host's name (a container's is its own)."""
    import hashlib
    import socket

    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


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
