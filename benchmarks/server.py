"""`gist-onnx serve` under load: requests/s, latency and the server's CPU per request, batching
across requests on and off, against `encode` on the same texts in batches of 32 in one process
(the ceiling); and the exact cache on a stream of repeated queries.

    python benchmarks/server.py [--model DIR] [--variant int8] [--seconds 5] [--rounds 3]

Settings: 1, 8 and 32 concurrent clients each sending one short text per request (queries of
~8 tokens from STS-B), and 8 clients sending 32 texts per request; every request carries texts
no earlier request sent (a counter in each), so the cache never answers and every text runs
through the graph. Then the repeated-query stream: 32 clients x 1 text drawn from 5,000 queries
by a Zipf law (s = 1.1, as search logs follow), with the cache on (the default) and off
(`--cache-size 0`). Each client holds one keep-alive HTTP/1.1 connection and sends its next
request when the last one is answered. The load comes from wrk (`apt-get install wrk`), on the
same 2 cores as the server, so what the clients cost is in the throughput figures; the server's
own CPU time (user + system, from /proc for its process) is read around each run, so its CPU per
request is not blurred by the load generator's. Its split: the graph's share is the CPU the
ceiling's `encode` spends per text (from its process_time), the rest is the server's own (HTTP,
JSON, routing, the hand-off to the graph thread). Writes benchmarks/results/<family>/server.json
and the "Server" section of benchmarks/results/<family>/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.append(str(HERE.parent))  # the clone, last: tests.support, export.sts
import sections  # noqa: E402
from common import add_model_argument, model_folder  # noqa: E402
from export.sts import load_sts  # noqa: E402
from tests.support.serverproc import Server  # noqa: E402

SETTINGS = ((1, 1), (8, 1), (32, 1), (8, 32))  # (clients, texts per request)
ZIPF_QUERIES, ZIPF_S, ZIPF_REQUESTS = 5_000, 1.1, 20_000


def queries() -> list[str]:
    sentences = load_sts("stsb").sentences
    random.Random(0).shuffle(sentences)
    # Without quotes or backslashes: the wrk script marks each text's closing quote.
    return [" ".join(s.split()[:5]) for s in sentences if '"' not in s and "\\" not in s]


def zipf_stream(texts: list[str]) -> list[str]:
    """ZIPF_REQUESTS queries drawn from ZIPF_QUERIES by a Zipf law: rank r with weight r^-s."""
    pool = texts[:ZIPF_QUERIES]
    weights = [1 / (rank**ZIPF_S) for rank in range(1, len(pool) + 1)]
    return random.Random(1).choices(pool, weights=weights, k=ZIPF_REQUESTS)


WRK_SCRIPT = """
local bodies = {BODIES}
local unique = UNIQUE
local i = 0
local tag = ""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
init = function(args) tag = tostring(math.random(1e9)) end
request = function()
  i = i + 1
  local body = bodies[(i % #bodies) + 1]
  if unique then
    -- a new text every request: each text gets this connection's tag and the request's number
    body = string.gsub(body, '"([^"]*)"@', '"%1 ' .. tag .. ' ' .. i .. '"')
  else
    body = string.gsub(body, '"@', '"')
  end
  return wrk.format(nil, "/v1/embeddings", nil, body)
end
done = function(summary, latency, requests)
  io.stderr:write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "bad": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"""


def _body(batch: list[str]) -> str:
    """A request body whose texts end in '"@' (the script replaces the marker)."""
    texts = ", ".join(json.dumps(t) + "@" for t in batch)
    return '{"input": [' + texts + '], "encoding_format": "float"}'


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time so far (all its threads)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_wrk(
    server: Server,
    batches: list[list[str]],
    clients: int,
    *,
    unique: bool,
    seconds: float,
    work: Path,
) -> dict[str, Any]:
    """A closed loop of ``clients`` connections with wrk (C, epoll), cycling through ``batches``
    (each request's texts made new with ``unique``); the server's CPU time read around it."""
    assert server.proc is not None
    lua = ", ".join("[==[" + _body(b) + "]==]" for b in batches)
    script = work / "bench.lua"
    script.write_text(WRK_SCRIPT.replace("BODIES", lua).replace("UNIQUE", str(unique).lower()))
    url = f"http://127.0.0.1:{server.port}"
    command = ["wrk", "-t", "1", "-c", str(clients), "-s", str(script), url]
    subprocess.run([*command, "-d", "1s"], capture_output=True, check=True)  # warm-up
    before = cpu_seconds(server.proc.pid)
    proc = subprocess.run(
        [*command, "-d", f"{seconds:g}s", "--timeout", "10s"],
        capture_output=True,
        text=True,
        check=True,
    )
    cpu = cpu_seconds(server.proc.pid) - before
    r = json.loads(proc.stderr.strip().splitlines()[-1])
    if r["bad"]:
        raise RuntimeError(f"{r['bad']} requests failed: {proc.stdout}")
    elapsed = r["duration_us"] / 1e6
    per_request = len(batches[0])
    return {
        "requests_per_s": r["requests"] / elapsed,
        "texts_per_s": r["requests"] * per_request / elapsed,
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "requests": r["requests"],
        "server_cpu_us_per_request": cpu / r["requests"] * 1e6,
    }


CEILING = """
import json, sys, time
from gist_onnx import GistEncoder
texts = json.loads(sys.argv[1])
enc = GistEncoder(sys.argv[2], variant=sys.argv[3])
enc.encode(texts[:256], batch_size=32)
runs = []
for _ in range(3):
    t, c = time.perf_counter(), time.process_time()
    enc.encode(texts, batch_size=32)
    runs.append((time.perf_counter() - t, time.process_time() - c))
wall, cpu = sorted(runs)[1]
print(json.dumps({"texts_per_s": len(texts) / wall, "cpu_us_per_text": cpu / len(texts) * 1e6}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_argument(parser)
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured per setting")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians are reported)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")

    model = model_folder(args.model)
    texts = queries()
    rng = random.Random(0)

    def batches(per_request: int) -> list[list[str]]:
        return [rng.sample(texts, per_request) for _ in range(512)]

    stream = [[q] for q in zipf_stream(texts)]

    # The ceiling's texts carry what the load's do: a connection's tag and a request number
    # (each adds tokens: the ceiling must encode as many).
    tags = random.Random(2)
    marked = [f"{t} {tags.randrange(10**9)} {i + 1}" for i, t in enumerate(texts[:2048])]

    def ceiling() -> dict[str, float]:
        command = [sys.executable, "-c", CEILING, json.dumps(marked), str(model)]
        out = subprocess.run([*command, args.variant], capture_output=True, text=True, check=True)
        return dict(json.loads(out.stdout))

    # The machine's speed drifts by tens of percent over minutes here: rounds, each with its own
    # ceiling, and every figure the median over the rounds (ratios per round, then the median).
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    ceilings: list[dict[str, float]] = []
    cases = [
        ("batching", [], [(c, n, False) for c, n in SETTINGS]),
        ("no batching", ["--no-batching"], [(c, n, False) for c, n in SETTINGS]),
        ("cache on", [], [(32, 1, True)]),
        ("cache off", ["--cache-size", "0"], [(32, 1, True)]),
    ]
    for round_ in range(args.rounds):
        ceilings.append(ceiling())
        ceil = ceilings[-1]
        print(f"round {round_ + 1}: ceiling {ceil['texts_per_s']:.0f} texts/s", flush=True)
        for mode, flags, settings in cases:
            server = Server(model, "--variant", args.variant, "--quiet", *flags).start()
            try:
                for clients, per_request, zipf in settings:
                    label = (
                        f"{clients} clients x 1 repeated query (Zipf)"
                        if zipf
                        else f"{clients} clients x {per_request} text" + "s" * (per_request > 1)
                    )
                    with tempfile.TemporaryDirectory() as tmp:
                        row = load_wrk(
                            server,
                            stream if zipf else batches(per_request),
                            clients,
                            unique=not zipf,
                            seconds=args.seconds,
                            work=Path(tmp),
                        )
                    row["of_ceiling"] = row["texts_per_s"] / ceil["texts_per_s"]
                    graph = ceil["cpu_us_per_text"] * per_request
                    row["graph_cpu_us_per_request"] = graph
                    row["other_cpu_us_per_request"] = row["server_cpu_us_per_request"] - graph
                    rows.setdefault(label, {}).setdefault(mode, []).append(row)
                    print(
                        f"  {mode}, {label}: {row['requests_per_s']:.0f} req/s, "
                        f"{row['of_ceiling']:.2f}x, p50 {row['p50_ms']:.1f} ms, "
                        f"p99 {row['p99_ms']:.1f} ms, server CPU "
                        f"{row['server_cpu_us_per_request']:.0f} us/request",
                        flush=True,
                    )
            finally:
                server.stop()
    results: dict[str, Any] = {
        "settings": {
            label: {
                mode: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                for mode, runs in modes.items()
            }
            for label, modes in rows.items()
        },
        "runs": rows,
        "ceiling_texts_per_s": statistics.median(c["texts_per_s"] for c in ceilings),
        "ceiling_cpu_us_per_text": statistics.median(c["cpu_us_per_text"] for c in ceilings),
        "ceiling_runs": [c["texts_per_s"] for c in ceilings],
        "zipf": {"queries": ZIPF_QUERIES, "s": ZIPF_S, "requests": ZIPF_REQUESTS},
        "rounds": args.rounds,
        "date": time.strftime("%Y-%m-%d"),
        "client": "wrk",
        "variant": args.variant,
    }
    sections.publish("server", results, render(results))
    return 0


def render(r: dict[str, Any]) -> str:
    ceiling = r["ceiling_texts_per_s"]
    zipf = r["zipf"]
    lines = [
        "## Server",
        "",
        f"Written by `python benchmarks/server.py` ({r['date']}): `gist-onnx serve`, "
        f"{r['variant']}, 2 cores shared with the load generator (wrk, one thread; each client "
        "holds one keep-alive connection and sends its next request when the last is answered). "
        "Short texts: STS-B queries of ~8 tokens, each request's made new by a tag and a number "
        "(the cache never answers them). Ceiling: `encode` on such texts (tag and number "
        "included) in batches of 32 in one process, "
        f"measured at the start of each round: median {ceiling:,.0f} texts/s (rounds: "
        f"{', '.join(f'{c:,.0f}' for c in r['ceiling_runs'])}), "
        f"{r['ceiling_cpu_us_per_text']:.0f} us of CPU a text. Server CPU: the server process's "
        "user + system time per request (the load generator's not in it); graph: the "
        "ceiling's CPU for the request's texts, in runs of 32 (a run of fewer texts costs more "
        "per text, which 'other' then includes); other: the rest (HTTP, JSON, routing, the "
        "hand-off to the graph thread), measured alone in 'Server overhead' "
        "(`benchmarks/studies/server_overhead.py`). Medians over "
        f"{r['rounds']} rounds; 'of the ceiling' is the median of each round's ratio.",
        "",
        "| clients x texts per request | batching | requests/s | texts/s | of the ceiling | "
        "p50 | p99 | server CPU / request | graph | other |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, modes in r["settings"].items():
        if "Zipf" in label:
            continue
        for mode, row in modes.items():
            lines.append(
                f"| {label} | {'on' if mode == 'batching' else 'off'} | "
                f"{row['requests_per_s']:,.0f} | {row['texts_per_s']:,.0f} | "
                f"{row['of_ceiling']:.2f}x | {row['p50_ms']:.1f} ms | "
                f"{row['p99_ms']:.1f} ms | {row['server_cpu_us_per_request']:.0f} us | "
                f"{row['graph_cpu_us_per_request']:.0f} us | "
                f"{row['other_cpu_us_per_request']:.0f} us |"
            )
    lines += [
        "",
        f"The exact cache on repeated queries: {zipf['requests']:,} requests of one query drawn "
        f"from {zipf['queries']:,} by a Zipf law (s = {zipf['s']}), 32 clients, the cache on "
        "(the default) and off (`--cache-size 0`):",
        "",
        "| cache | requests/s | p50 | p99 | server CPU / request |",
        "|---|---|---|---|---|",
    ]
    for label, modes in r["settings"].items():
        if "Zipf" not in label:
            continue
        for mode, row in modes.items():
            lines.append(
                f"| {mode.split()[1]} | {row['requests_per_s']:,.0f} "
                f"| {row['p50_ms']:.1f} ms | {row['p99_ms']:.1f} ms "
                f"| {row['server_cpu_us_per_request']:.0f} us |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
