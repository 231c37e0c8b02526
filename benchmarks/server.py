"""`gist-onnx serve` under load: requests/s and latency, batching across requests on and off,
against `encode` on the same texts in batches of 32 in one process (the ceiling).

    python benchmarks/server.py [--model DIR] [--variant int8] [--seconds 6]

Settings: 1, 8 and 32 concurrent clients each sending one short text per request (queries of
~8 tokens from STS-B), and 8 clients sending 32 texts per request. Each client holds one
keep-alive HTTP/1.1 connection and sends its next request when the last one is answered. The
load comes from wrk (`apt-get install wrk`), or, without it, from asyncio tasks in this process;
either runs on the same 2 cores as the server, so what the clients cost is in every figure
(the ceiling excepted). Writes benchmarks/results/server.json and the "Server"
section of benchmarks/results/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
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
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "export"))
import sections  # noqa: E402
from common import add_model_argument, model_folder  # noqa: E402
from serverproc import Server  # noqa: E402
from sts import load_sts  # noqa: E402

SETTINGS = ((1, 1), (8, 1), (32, 1), (8, 32))  # (clients, texts per request)
CLIENTS = {
    "wrk": "wrk, one thread",
    "python": "asyncio tasks in the benchmark's process",
}


def queries() -> list[str]:
    sentences = load_sts("stsb").sentences
    random.Random(0).shuffle(sentences)
    return [" ".join(s.split()[:5]) for s in sentences]


async def client(
    port: int, texts: list[str], per_request: int, stop: float, *, seed: int, out: list[float]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rng = random.Random(seed)
    try:
        while time.perf_counter() < stop:
            batch = [texts[rng.randrange(len(texts))] for _ in range(per_request)]
            body = json.dumps({"input": batch, "encoding_format": "float"}).encode()
            start = time.perf_counter()
            writer.write(
                b"POST /v1/embeddings HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json"
                + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if not status.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"the server answered {status!r}")
            out.append(time.perf_counter() - start)
    finally:
        writer.close()


async def load(port: int, texts: list[str], clients: int, per_request: int, seconds: float) -> Any:
    latencies: list[float] = []
    warm_until = time.perf_counter() + 1.0  # first second: warm-up, not counted
    await asyncio.gather(
        *(client(port, texts, per_request, warm_until, seed=i, out=[]) for i in range(clients))
    )
    stop = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(
        *(client(port, texts, per_request, stop, seed=i, out=latencies) for i in range(clients))
    )
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests_per_s": len(latencies) / elapsed,
        "texts_per_s": len(latencies) * per_request / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000,
        "requests": len(latencies),
    }


WRK_SCRIPT = """
local bodies = {BODIES}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i + 1
  return wrk.format(nil, "/v1/embeddings", nil, bodies[(i % #bodies) + 1])
end
done = function(summary, latency, requests)
  io.stderr:write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "bad": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"""


def load_wrk(
    port: int, texts: list[str], clients: int, per_request: int, *, seconds: float, work: Path
) -> dict[str, Any]:
    """The same closed loop with wrk (C, epoll): the clients then cost the 2 cores little."""
    rng = random.Random(0)
    bodies = [
        json.dumps({"input": [texts[rng.randrange(len(texts))] for _ in range(per_request)]})
        for _ in range(512)
    ]
    script = work / "bench.lua"
    script.write_text(WRK_SCRIPT.replace("BODIES", ", ".join(json.dumps(b) for b in bodies)))
    command = ["wrk", "-t", "1", "-c", str(clients), "-s", str(script), f"http://127.0.0.1:{port}"]
    subprocess.run([*command, "-d", "1s"], capture_output=True, check=True)  # warm-up
    proc = subprocess.run(
        [*command, "-d", f"{seconds:g}s", "--timeout", "10s"],
        capture_output=True,
        text=True,
        check=True,
    )
    r = json.loads(proc.stderr.strip().splitlines()[-1])
    if r["bad"]:
        raise RuntimeError(f"{r['bad']} requests failed: {proc.stdout}")
    elapsed = r["duration_us"] / 1e6
    return {
        "requests_per_s": r["requests"] / elapsed,
        "texts_per_s": r["requests"] * per_request / elapsed,
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "requests": r["requests"],
    }


CEILING = """
import json, sys, time
from gist_onnx import GistEncoder
texts = json.loads(sys.argv[1])
enc = GistEncoder(sys.argv[2], variant=sys.argv[3])
enc.encode(texts[:256], batch_size=32)
best = []
for _ in range(3):
    t = time.perf_counter(); enc.encode(texts, batch_size=32); best.append(time.perf_counter() - t)
print(len(texts) / sorted(best)[1])
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_argument(parser)
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured per setting")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians are reported)")
    parser.add_argument(
        "--client",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="load generator: wrk (apt-get install wrk; the default where found) or asyncio",
    )
    args = parser.parse_args()

    model = model_folder(args.model)
    texts = queries()

    def ceiling() -> float:
        command = [sys.executable, "-c", CEILING, json.dumps(texts[:2048]), str(model)]
        out = subprocess.run([*command, args.variant], capture_output=True, text=True, check=True)
        return float(out.stdout)

    def measure(port: int, clients: int, per_request: int) -> dict[str, Any]:
        if args.client == "wrk":
            with tempfile.TemporaryDirectory() as tmp:
                return load_wrk(
                    port, texts, clients, per_request, seconds=args.seconds, work=Path(tmp)
                )
        return asyncio.run(load(port, texts, clients, per_request, args.seconds))

    # The machine's speed drifts by tens of percent over minutes here: rounds, each with its own
    # ceiling, and every figure the median over the rounds (ratios per round, then the median).
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    ceilings = []
    for round_ in range(args.rounds):
        ceilings.append(ceiling())
        print(f"round {round_ + 1}: ceiling {ceilings[-1]:.0f} texts/s", flush=True)
        for mode, flags in (("batching", []), ("no batching", ["--no-batching"])):
            server = Server(model, "--variant", args.variant, "--quiet", *flags).start()
            try:
                for clients, per_request in SETTINGS:
                    label = f"{clients} clients x {per_request} text" + "s" * (per_request > 1)
                    row = measure(server.port, clients, per_request)
                    row["of_ceiling"] = row["texts_per_s"] / ceilings[-1]
                    rows.setdefault(label, {}).setdefault(mode, []).append(row)
                    print(
                        f"  {mode}, {label}: {row['requests_per_s']:.0f} req/s, "
                        f"{row['of_ceiling']:.2f}x, p50 {row['p50_ms']:.1f} ms, "
                        f"p99 {row['p99_ms']:.1f} ms",
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
        "ceiling_texts_per_s": statistics.median(ceilings),
        "ceiling_runs": ceilings,
        "rounds": args.rounds,
        "date": time.strftime("%Y-%m-%d"),
        "client": args.client,
        "variant": args.variant,
    }
    sections.publish("server", results, render(results))
    return 0


def render(r: dict[str, Any]) -> str:
    ceiling = r["ceiling_texts_per_s"]
    lines = [
        "## Server",
        "",
        f"Written by `python benchmarks/server.py` ({r['date']}): `gist-onnx serve`, "
        f"{r['variant']}, 2 cores shared with the clients ({CLIENTS[r['client']]}; each client "
        "holds one keep-alive connection and sends its next request when the last is answered). "
        "Short texts: STS-B queries of ~8 tokens. Ceiling: `encode` on the same texts in "
        f"batches of 32 in one process, measured at the start of each round: median "
        f"{ceiling:,.0f} texts/s (rounds: {', '.join(f'{c:,.0f}' for c in r['ceiling_runs'])}). "
        f"Medians over {r['rounds']} rounds; 'of the ceiling' is the median of each round's "
        "ratio.",
        "",
        "| clients x texts per request | batching | requests/s | texts/s | of the ceiling | "
        "p50 | p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, modes in r["settings"].items():
        for mode, row in modes.items():
            lines.append(
                f"| {label} | {'on' if mode == 'batching' else 'off'} | "
                f"{row['requests_per_s']:,.0f} | {row['texts_per_s']:,.0f} | "
                f"{row['of_ceiling']:.2f}x | {row['p50_ms']:.1f} ms | "
                f"{row['p99_ms']:.1f} ms |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
