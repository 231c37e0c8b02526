"""Does one large request stall the server for the others? Measure /health while it runs.

    python benchmarks/studies/server_stall.py [--model DIR]

Starts ``gist-onnx serve`` (int8) in its own process, sends one large request (2,048 texts,
6.6 MB, to /tokenize; 2,048 sentences to /v1/embeddings) and, while it runs, calls /health
every 20 ms from another thread: the median and worst /health latency say whether the event
loop stayed free (before parsing and tokenizing moved off it, /health waited 5.3 s behind one
8 MB /tokenize). Writes benchmarks/results/server_stall.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the harness's helpers
from common import RESULTS, model_folder


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _call(url: str, body: bytes | None = None, timeout: float = 900) -> int:
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        answer.read()
        return int(answer.status)


def measure(url: str, route: str, texts: list[str]) -> dict[str, Any]:
    body = json.dumps({"input": texts}).encode()
    done, outcome = threading.Event(), {}

    def send() -> None:
        started = time.perf_counter()
        outcome["status"] = _call(url + route, body)
        outcome["seconds"] = time.perf_counter() - started
        done.set()

    worker = threading.Thread(target=send)
    worker.start()
    latencies = []
    while not done.wait(0.02):
        started = time.perf_counter()
        _call(url + "/health", timeout=60)
        latencies.append((time.perf_counter() - started) * 1000)
    worker.join()
    latencies.sort()
    return {
        "route": route,
        "texts": len(texts),
        "megabytes": round(len(body) / 1e6, 2),
        "status": outcome["status"],
        "request_s": round(outcome["seconds"], 2),
        "health_calls": len(latencies),
        "health_median_ms": round(latencies[len(latencies) // 2], 1),
        "health_max_ms": round(latencies[-1], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()
    folder = model_folder(args.model)
    port = _port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "gist_onnx.cli", "serve", "--model", str(folder)]
    with tempfile.TemporaryFile() as log:  # a file, never an undrained pipe
        server = subprocess.Popen(
            [*command, "--variant", "int8", "--port", str(port), "--quiet"],
            stdout=log,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    _call(url + "/health", timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.2)
            rows = [
                measure(url, "/tokenize", [(f"word{i} ") * 380 for i in range(2048)]),
                measure(
                    url,
                    "/v1/embeddings",
                    [f"Sentence number {i} is about the weather in the city." for i in range(2048)],
                ),
            ]
        finally:
            server.terminate()
            server.wait(timeout=60)
    report = {"machine": platform.processor() or platform.machine(), "rows": rows}
    (RESULTS / "server_stall.json").write_text(
        json.dumps(report, indent=2) + "\n", encoding="utf-8"
    )
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
