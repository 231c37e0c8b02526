"""Serverless figures: `gist-onnx bundle` sizes against AWS Lambda's limits, and the cold start,
peak memory and warm latency of the int8 bundle run as Lambda runs it.

    python benchmarks/serverless.py [--model DIR] [--runs 10] [--compile-with PYTHON3.12]

- Sizes: `gist-onnx bundle` for int8 and fp32, x86_64 and aarch64, Python 3.12 (Lambda's
  python3.12 runtime, Amazon Linux 2023): every zip and the unzipped total, against 50 MB per zip
  (direct upload, layers too) and 250 MB unzipped.
- Cold start: the int8 bundle built for this machine's Python and glibc, unzipped as Lambda lays
  it out (function in a task folder, layer under opt/python), run by the system's Python with
  `-I -S` (only the bundle on sys.path) in a fresh process per run, with AWS_LAMBDA_RUNTIME_API
  set so the handler module loads the model at import, as in Lambda's init phase. Measured from
  just before the process is started to the moment the first invocation (one short query, a
  Function URL event) has returned; peak RSS as the process reports it. On 2 CPUs; pinned to 1
  CPU (a 1,769 MB function has one vCPU); with the manifest check off; and without the .pyc
  files (what a bundle built with no Python of the target version at hand costs). Settings
  interleaved, medians over the runs.
- Warm: in one process, 500 invocations of one short query through a Function URL event (JSON
  parsed, encoded, JSON written); p50 and p99.

Writes benchmarks/results/<family>/serverless.json and the "Serverless" section of
benchmarks/results/<family>/RESULTS.md (between its markers; benchmarks/run.py keeps that section
when it rewrites the file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sections
from common import model_folder

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
QUERY = "what is the capital of France?"

CHILD = """
import json, sys, time
t0 = time.time()
sys.path[:0] = PATHS
from gist_onnx.serverless import handler
t1 = time.time()
event = EVENT
answer = handler(event, None)
t2 = time.time()
assert answer["statusCode"] == 200, answer
warm = []
for _ in range(WARM):
    s = time.perf_counter()
    handler(event, None)
    warm.append(time.perf_counter() - s)
import resource
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"t0": t0, "imported": t1, "answered": t2, "warm": warm, "peak_rss_kib": peak}))
"""


def log(message: str) -> None:
    print(message, flush=True)


def bundle_sizes(model: Path, compile_with: str | None) -> list[dict[str, Any]]:
    from gist_onnx.serverless.bundle import build

    rows = []
    for variant in ("int8", "fp32"):
        for arch in ("x86_64", "aarch64"):
            log(f"bundle: {variant} {arch} python3.12 ...")
            with tempfile.TemporaryDirectory() as tmp:
                report = build(
                    model,
                    Path(tmp) / "dist",
                    variant=variant,
                    arch=arch,
                    python="3.12",
                    compile_with=compile_with,
                    log=lambda _: None,
                )
            rows.append(
                {
                    "variant": variant,
                    "arch": arch,
                    "layout": report.layout,
                    "parts": {p.name: [p.zipped_bytes, p.unzipped_bytes] for p in report.parts},
                    "unzipped_bytes": report.unzipped_bytes,
                    "packages": report.packages,
                    "compiled": report.compiled,
                }
            )
    return rows


def local_bundle(model: Path, root: Path) -> tuple[list[str], str]:
    """The int8 bundle for this machine, unzipped as Lambda lays it out; (sys.path, task root)."""
    from gist_onnx.serverless.bundle import build

    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    report = build(
        model,
        root / "dist",
        variant="int8",
        python=here,
        glibc=platform.libc_ver()[1],
        log=lambda _: None,
    )
    task, opt = root / "task", root / "opt"
    for part in report.parts:
        with zipfile.ZipFile(part.path) as archive:
            archive.extractall(opt if part.name == "layer" else task)
    return [str(task), str(opt / "python")], str(task)


def system_python() -> str:
    """The system's Python of this version (as Lambda's runtime is a plain CPython)."""
    candidate = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    return str(candidate) if candidate.is_file() else sys.executable


def function_url_event() -> dict[str, Any]:
    events = HERE.parent / "tests" / "events" / "function_url.json"
    event: dict[str, Any] = json.loads(events.read_text())
    event["body"] = json.dumps({"input": QUERY})
    return event


# Starts the measured process from a small interpreter of its own: a process's peak RSS counts
# what it inherited at fork time, so a large parent (this script, after building bundles) would
# inflate the figure. The measured process reports its own peak (getrusage) after answering.
LAUNCHER = """
import json, subprocess, sys, time
command, env = json.loads(sys.argv[1]), json.loads(sys.argv[2])
start = time.time()
proc = subprocess.run(command, capture_output=True, text=True, env=env)
print(json.dumps({"start": start, "out": proc.stdout, "err": proc.stderr[-800:],
                  "code": proc.returncode}))
"""


def one_run(
    paths: list[str], task: str, warm: int, cpus: str | None, extra_env: dict[str, str]
) -> dict[str, Any]:
    code = (
        CHILD.replace("PATHS", repr(paths))
        .replace("EVENT", repr(function_url_event()))
        .replace("WARM", str(warm))
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "LAMBDA_TASK_ROOT": task,
        # Set in Lambda: the handler module then loads the model at import (the init phase).
        # Nothing listens there; the handler is called directly.
        "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9",
        **extra_env,
    }
    command = [system_python(), "-I", "-S", "-c", code]
    if os.geteuid() == 0 and shutil.which("setpriv"):
        # As Lambda does, run as a user who cannot write the code folders: root could, and would
        # cache .pyc files there that the next run then finds.
        command = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    launched = subprocess.run(
        [system_python(), "-I", "-S", "-c", LAUNCHER, json.dumps(command), json.dumps(env)],
        capture_output=True,
        text=True,
        check=True,
    )
    outcome = json.loads(launched.stdout)
    if outcome["code"] != 0:
        raise SystemExit(f"the bundle failed: {outcome['err']}")
    result = json.loads(outcome["out"].strip().splitlines()[-1])
    start = outcome["start"]
    return {
        "cold_s": result["answered"] - start,
        "interpreter_s": result["t0"] - start,
        "init_s": result["imported"] - result["t0"],
        "first_invoke_s": result["answered"] - result["imported"],
        "peak_rss_mib": result["peak_rss_kib"] / 1024,
        "warm_ms": [w * 1000 for w in result["warm"]],
    }


def without_pyc(root: Path) -> list[str]:
    """A copy of the unzipped bundle under ``root`` without its .pyc files (a bundle built with no
    Python of the target version at hand), read-only like Lambda's code folders, so that nothing
    gets cached; returns its sys.path entries."""
    copy = root / "no-pyc"
    for part in ("task", "opt"):
        shutil.copytree(root / part, copy / part)
    for cache in list(copy.rglob("__pycache__")):
        shutil.rmtree(cache)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    return [str(copy / "task"), str(copy / "opt" / "python")]


def cold_starts(paths: list[str], task: str, runs: int, root: Path) -> dict[str, Any]:
    """Cold starts per setting, the settings interleaved run by run; warm latency once each."""
    settings: dict[str, tuple[list[str], str | None, dict[str, str]]] = {
        "2 CPUs": (paths, None, {}),
    }
    if shutil.which("taskset"):
        settings["1 CPU"] = (paths, "0", {})
    settings["2 CPUs, manifest check off"] = (paths, None, {"GIST_ONNX_VERIFY_FILES": "0"})
    settings["2 CPUs, no .pyc in the bundle"] = (without_pyc(root), None, {})
    samples: dict[str, list[dict[str, Any]]] = {label: [] for label in settings}
    log(f"cold start: {runs} rounds of {len(settings)} settings, a fresh process each ...")
    for _ in range(runs):
        for label, (where, cpus, env) in settings.items():
            samples[label].append(one_run(where, task, 0, cpus, env))
    out: dict[str, Any] = {}
    for label, (where, cpus, env) in settings.items():
        out[label] = {
            key: statistics.median(s[key] for s in samples[label])
            for key in ("cold_s", "interpreter_s", "init_s", "first_invoke_s", "peak_rss_mib")
        }
        out[label]["runs"] = runs
        warm = one_run(where, task, 500, cpus, env)["warm_ms"]
        out[label]["warm_p50_ms"] = statistics.median(warm)
        out[label]["warm_p99_ms"] = sorted(warm)[int(len(warm) * 0.99) - 1]
        log(f"  {label}: median {out[label]['cold_s'] * 1000:.0f} ms")
    return out


def render(r: dict[str, Any]) -> str:
    mb = 1e6
    lines = [
        "## Serverless (AWS Lambda)",
        "",
        f"Written by `python benchmarks/serverless.py` ({r['date']}; {r['machine']}).",
        "",
        "`gist-onnx bundle` for Lambda's python3.12 runtime (Amazon Linux 2023); limits: 50 MB "
        "per zip for a direct upload (layers too), 250 MB unzipped in all.",
        "",
        "| variant | arch | layout | zips (zipped / unzipped MB) | unzipped in all | "
        "every zip <= 50 MB | <= 250 MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["bundles"]:
        parts = ", ".join(
            f"{name}.zip {z / mb:.1f} / {u / mb:.1f}" for name, (z, u) in row["parts"].items()
        )
        direct = all(z <= 50 * mb for z, _ in row["parts"].values())
        lines.append(
            f"| {row['variant']} | {row['arch']} | {row['layout']} | {parts} | "
            f"{row['unzipped_bytes'] / mb:.1f} MB | {'yes' if direct else 'no: upload via S3'} | "
            f"{'yes' if row['unzipped_bytes'] <= 250 * mb else 'no'} |"
        )
    first = r["bundles"][0]
    lines += [
        "",
        f"Packages: {', '.join(f'{k} {v}' for k, v in first['packages'].items())}; .pyc: "
        f"{first['compiled']}.",
        "",
        f"Cold start of the int8 bundle as Lambda counts it (fresh `{r['python']} -I -S` process "
        "with only the unzipped bundle on its path: interpreter, imports, model load in the init "
        f"phase, first invocation of one short query through a Function URL event; median of "
        f"{r['runs']} runs; page cache warm):",
        "",
        "| setting | cold start | interpreter | init (imports + model load) | first invocation | "
        "peak RSS | warm p50 | warm p99 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, c in r["cold"].items():
        lines.append(
            f"| {label} | {c['cold_s'] * 1000:.0f} ms | {c['interpreter_s'] * 1000:.0f} ms | "
            f"{c['init_s'] * 1000:.0f} ms | {c['first_invoke_s'] * 1000:.1f} ms | "
            f"{c['peak_rss_mib']:.0f} MiB | {c['warm_p50_ms']:.2f} ms | {c['warm_p99_ms']:.2f} ms |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", type=Path, default=None, help="export folder (default: stand-in)"
    )
    parser.add_argument("--runs", type=int, default=10, help="cold starts per setting")
    parser.add_argument(
        "--compile-with",
        default=shutil.which("python3.12"),
        help="a Python 3.12 to compile the Lambda bundles' .pyc with (default: python3.12 on PATH)",
    )
    args = parser.parse_args()
    model = model_folder(args.model)
    bundles = bundle_sizes(model, args.compile_with)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)  # readable by the unprivileged user the runs use
        paths, task = local_bundle(model, Path(tmp))
        cold = cold_starts(paths, task, args.runs, Path(tmp))
    from run import machine

    about = machine()
    r = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{about['cpu']}, {about['cores']} cores",
        "python": system_python(),
        "runs": args.runs,
        "bundles": bundles,
        "cold": cold,
    }
    sections.publish("serverless", r, render(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
