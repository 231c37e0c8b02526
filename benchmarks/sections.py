"""Sections of RESULTS.md that a script other than run.py writes, between markers of their own.

Each script rewrites only its section (`write`); run.py rewrites the rest of the file and keeps
every marked section as it was (`kept`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NAMES = ("serverless", "memory", "server", "server_overhead", "embed", "ray_job", "web")


def markers(name: str) -> tuple[str, str]:
    """The start and end markers of section ``name``: also the docs' snippet sections, so a docs
    page includes the section as written
    (``--8<-- "benchmarks/results/<family>/RESULTS.md:server"``)."""
    return f"<!-- --8<-- [start:{name}] -->", f"<!-- --8<-- [end:{name}] -->"


def write(results: Path, name: str, body: str) -> None:
    """Put ``body`` (markdown, without the markers) in section ``name`` of ``results``."""
    start, end = markers(name)
    section = f"{start}\n{body.strip()}\n{end}\n"
    text = results.read_text() if results.is_file() else ""
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    results.write_text(text)


def kept(old: str) -> str:
    """Every marked section of ``old`` (an earlier RESULTS.md), in order, markers included."""
    out = []
    for name in NAMES:
        start, end = markers(name)
        if start in old and end in old:
            out.append(old[old.index(start) : old.index(end) + len(end)])
    return "\n\n".join(out)


def publish(name: str, results: dict[str, Any], body: str) -> None:
    """Write ``results`` (with this machine's CPU, under ``cpu``) to {name}.json and ``body`` to
    its section of RESULTS.md, both in this CPU family's results folder
    (benchmarks/results/<family>/: see common.results_dir)."""
    from common import machine_record, results_dir

    machine = machine_record()
    here = results_dir(str(machine["family"]))
    record = {**results, "cpu": machine}
    (here / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    flags = " ".join(str(f) for f in machine["flags"])  # type: ignore[attr-defined]
    cpu_line = f"CPU: {machine['cpu']} ({machine['family']}: {flags}), {machine['cores']} cores."
    write(here / "RESULTS.md", name, f"{body.strip()}\n\n{cpu_line}")
    print(body)
