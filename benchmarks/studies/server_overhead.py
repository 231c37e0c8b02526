"""The server's own CPU per request, without the model: `gist-onnx serve` of this checkout beside
the same server of an earlier revision, on a model whose graph costs next to nothing.

    python benchmarks/studies/server_overhead.py [--baseline c212dd3] [--rounds 5]

The model is the test suite's tiny one (a real WordPiece tokenizer, a one-node Gather graph), so
what the server process spends per request is HTTP, JSON, routing, the queue and the hand-off to
the graph thread: the part of a request that is Python, on any CPU. Load: wrk, 32 connections,
one new short text per request (the cache never answers), 5 s after a 1 s warm-up, each
revision in its own server process, rounds interleaved. The baseline's package is checked out
with `git worktree` into a temporary folder. CPU per request: the server process's user +
system time over the run (from /proc), divided by the requests answered. Writes
benchmarks/results/server_overhead.json and the "server_overhead" section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
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
sys.path.insert(0, str(ROOT / "tests"))
import sections  # noqa: E402
from server import cpu_seconds  # noqa: E402
from serverproc import Server  # noqa: E402
from tiny import write_manifest, write_tiny_model  # noqa: E402

LUA = """
local i = 0
local tag = ""
local words = {"capital", "france", "bread", "river", "music", "cat", "train", "summer"}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
init = function(args) tag = tostring(math.random(1e9)) end
request = function()
  i = i + 1
  local body = '{"input": ["' .. words[(i % 8) + 1] .. ' query ' .. tag .. ' ' .. i ..
    '"], "encoding_format": "float"}'
  return wrk.format(nil, "/v1/embeddings", nil, body)
end
done = function(summary, latency, requests)
  io.stderr:write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "bad": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"""


def run(tree: Path, model: Path, script: Path, seconds: float) -> dict[str, Any]:
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
    assert server.proc is not None
    version = subprocess.run(
        [sys.executable, "-c", "import gist_onnx; print(gist_onnx.__file__)"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert version.startswith(str(tree)), f"{tree}: imported {version}"
    try:
        assert server.proc is not None
        command = ["wrk", "-t", "1", "-c", "32", "-s", str(script), server.url]
        subprocess.run([*command, "-d", "1s"], capture_output=True, check=True)
        before = cpu_seconds(server.proc.pid)
        done = subprocess.run(
            [*command, "-d", f"{seconds:g}s"], capture_output=True, text=True, check=True
        )
        cpu = cpu_seconds(server.proc.pid) - before
    finally:
        server.stop()
    r = json.loads(done.stderr.strip().splitlines()[-1])
    if r["bad"]:
        raise RuntimeError(f"{r['bad']} requests failed")
    return {
        "requests_per_s": r["requests"] / (r["duration_us"] / 1e6),
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "cpu_us_per_request": cpu / r["requests"] * 1e6,
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
        script = work / "load.lua"
        script.write_text(LUA)
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
                    row = run(tree, model, script, args.seconds)
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
