"""A new user's first command, measured: `make demo` in a fresh clone (its wall time and the size
of the `.venv` it creates).

    python benchmarks/first_hour.py [--repo .]

Clones the repository's committed HEAD into a temporary folder, runs `make demo` there as the
README says, and writes first_hour.json in this CPU's results folder
(benchmarks/results/<family>/). pip's cache is whatever this machine has (say so when you quote
the time: a cold cache downloads ~1 GB more).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import machine_record, results_dir  # noqa: E402


def folder_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=HERE.parent)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "gist-onnx"
        subprocess.run(["git", "clone", "--quiet", str(args.repo), str(clone)], check=True)
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=clone,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        start = time.perf_counter()
        done = subprocess.run(
            ["make", "demo"], cwd=clone, env=env, capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
            return 1
        result = {
            "date": datetime.date.today().isoformat(),
            "commit": commit,
            "machine": machine_record(),
            "command": "make demo",
            "demo_s": round(seconds, 1),
            "venv_bytes": folder_bytes(clone / ".venv"),
            "pip_cache": "warm",
            "output_tail": done.stdout.strip().splitlines()[-6:],
        }
    output = args.output or results_dir() / "first_hour.json"
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
