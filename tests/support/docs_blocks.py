"""The code blocks of the README and the docs, and how each is checked (the docs tier).

A fenced ``python``, ``bash`` or ``sh`` block runs unless the line right above its fence says
otherwise::

    <!-- docs: syntax (why) -->   compiled (python) or parsed by ``bash -n``, not run
    <!-- docs: skip (why) -->     the same, for blocks that install or deploy (pip, aws, make)

A page's blocks run in order in one working folder that holds ``gist-onnx-model`` (the stand-in
export), with the hub offline. Run as a script, this module is that runner: it executes one
page's blocks (a JSON list on stdin), Python in one shared namespace, shell with ``bash -e``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

LANGUAGES = {"python": "python", "bash": "bash", "sh": "bash"}
_FENCE = re.compile(r"^```(\w+)\s*$")
_MARK = re.compile(r"^<!-- docs: (skip|syntax) \((.+)\) -->$")


@dataclass
class Block:
    page: str
    line: int  # of the opening fence
    language: str  # python or bash
    code: str
    check: str  # run, syntax or skip
    reason: str


def blocks(path: Path, root: Path) -> list[Block]:
    """Every python/bash block of ``path``; a marker that names no reason is an error."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, index = [], 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            if lines[index].startswith("<!-- docs:") and not _MARK.match(lines[index]):
                raise ValueError(f"{path}:{index + 1}: a docs marker needs a reason in ( )")
            index += 1
            continue
        end = index + 1
        while not lines[end].startswith("```"):
            end += 1
        language = LANGUAGES.get(fence.group(1))
        if language is not None:
            mark = _MARK.match(lines[index - 1]) if index else None
            found.append(
                Block(
                    page=path.relative_to(root).as_posix(),
                    line=index + 1,
                    language=language,
                    code="\n".join(lines[index + 1 : end]) + "\n",
                    check=mark.group(1) if mark else "run",
                    reason=mark.group(2) if mark else "",
                )
            )
        index = end + 1
    return found


def syntax_error(block: Block) -> str | None:
    """None if the block parses, else what is wrong."""
    if block.language == "python":
        try:
            compile(block.code, f"{block.page}:{block.line}", "exec")
        except SyntaxError as exc:
            return str(exc)
        return None
    proc = subprocess.run(
        ["bash", "-n"], input=block.code, capture_output=True, text=True, check=False
    )
    if proc.returncode:
        return proc.stderr.strip() or f"bash -n exited {proc.returncode}"
    return None


def run_page(page_blocks: list[Block]) -> None:
    """Run one page's blocks in order in the current folder; raises naming the failing block."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    for block in page_blocks:
        where = f"{block.page}:{block.line}"
        print(f"--- {where} ({block.language})", flush=True)
        if block.language == "python":
            exec(compile(block.code, where, "exec"), namespace)
        else:
            proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.code], check=False)
            if proc.returncode:
                raise SystemExit(f"{where}: the shell block exited {proc.returncode}")


def as_json(page_blocks: list[Block]) -> str:
    return json.dumps([asdict(b) for b in page_blocks])


if __name__ == "__main__":
    run_page([Block(**item) for item in json.load(sys.stdin)])
    print("--- all blocks ran", flush=True)
