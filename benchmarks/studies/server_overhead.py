"""The server's own CPU per request, without the model: `gist-onnx serve` of this checkout beside
the same server of an earlier revision, on a model whose graph costs next to nothing.

    python benchmarks/studies/server_overhead.py [--baseline c212dd3] [--rounds 5]

The model is the test suite's tiny one (a real WordPiece tokenizer, a one-node Gather graph), so
what the server process spends per request is HTTP, JSON, routing, the queue and the hand-off to
the graph thread: the part of a request that is Python, on any CPU. Load: benchmarks/server.py's
(wrk, 32 connections, one STS-B query per request made new by a tag and a number, so the cache
never answers), 5 s after a 1 s warm-up, each
revision in its own server process, rounds interleaved. The baseline's package is checked out
with `git worktree` into a temporary folder. CPU per request: the server process's user +
system time over the run (from /proc), divided by the requests answered. Writes
benchmarks/results/<family>/server_overhead.json and the "server_overhead" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))
sys.path.append(str(ROOT))  # the clone, last: tests.support, export.sts
import sections  # noqa: E402
from server import load_wrk, queries  # noqa: E402
from tests.support.serverproc import Server  # noqa: E402
from tests.support.tiny import write_manifest, write_tiny_model  # noqa: E402

QUERIES = [[text] for text in queries()[:512]]


def run(tree: Path, model: Path, seconds: float, work: Path) -> dict[str, Any]:
    """One server of ``tree``'s package under the load; its throughput and CPU per request."""
    # `python -m` puts its working folder first on sys.path: start it in the tree measured.
    env_before, cwd_before = os.environ.get("PYTHONPATH"), Path.cwd()
    os.environ["PYTHONPATH"] = str(tree)
    os.chdir(tree)
    try:
        server = Server(model, "--quiet").start()
    finally:
        os.chdir(cwd_before)
        if env_before is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = env_before
    try:
        imported = subprocess.run(
            [sys.executable, "-c", "import gist_onnx; print(gist_onnx.__file__)"],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert imported.startswith(str(tree)), f"{tree}: imported {imported}"
        # One new short text a request (server.py's load, its texts made new each request).
        row = load_wrk(server, QUERIES, 32, unique=True, seconds=seconds, work=work)
    finally:
        server.stop()
    return {
        "requests_per_s": row["requests_per_s"],
        "p50_ms": row["p50_ms"],
        "p99_ms": row["p99_ms"],
        "cpu_us_per_request": row["server_cpu_us_per_request"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="c212dd3", help="the earlier revision (git)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rows: dict[str, list[dict[str, Any]]] = {"baseline": [], "this checkout": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = write_tiny_model(work / "tiny", max_seq_length=16)
        write_manifest(model)
        baseline = work / "baseline"
        subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "worktree",
                "add",
                "-q",
                "--detach",
                str(baseline),
                args.baseline,
            ],
            check=True,
        )
        try:
            trees = {"baseline": baseline, "this checkout": ROOT}
            for round_ in range(args.rounds):
                for label, tree in trees.items():
                    row = run(tree, model, args.seconds, work)
                    rows[label].append(row)
                    print(
                        f"round {round_ + 1}, {label}: {row['requests_per_s']:.0f} req/s, "
                        f"{row['cpu_us_per_request']:.0f} us CPU a request",
                        flush=True,
                    )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)],
                check=False,
            )
    medians = {
        label: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for label, runs in rows.items()
    }
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "baseline": args.baseline,
        "head": head,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "medians": medians,
        "runs": rows,
    }
    sections.publish("server_overhead", results, render(results))
    return 0


def render(r: dict[str, Any]) -> str:
    base, this = r["medians"]["baseline"], r["medians"]["this checkout"]
    lines = [
        "## Server overhead",
        "",
        f"Written by `python benchmarks/studies/server_overhead.py --baseline {r['baseline']}` "
        f"({r['date']}, this checkout at {r['head']}): the server's own CPU per request, on the "
        "test suite's tiny model (a one-node graph), 32 wrk connections sending one new short "
        f"text each request, {r['seconds']:g} s a run, medians of {r['rounds']} interleaved "
        "rounds, each revision in its own server process.",
        "",
        "| server | requests/s | p50 | p99 | CPU / request |",
        "|---|---|---|---|---|",
    ]
    for label, row in (("baseline " + r["baseline"], base), ("this checkout", this)):
        lines.append(
            f"| {label} | {row['requests_per_s']:,.0f} | {row['p50_ms']:.1f} ms | "
            f"{row['p99_ms']:.1f} ms | {row['cpu_us_per_request']:.0f} us |"
        )
    lines += [
        "",
        f"CPU per request: {this['cpu_us_per_request'] / base['cpu_us_per_request']:.2f}x the "
        f"baseline's; requests/s {this['requests_per_s'] / base['requests_per_s']:.2f}x.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
