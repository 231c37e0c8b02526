"""The int8 graph's two forms on this CPU, beside an earlier revision: speed, cold start, vectors.

    python benchmarks/studies/int8_forms.py [--baseline c43aabf] [--rounds 5] [--model DIR]

Each setting runs in its own process, rounds interleaved (A B C D, A B C D, ...), medians:

- the earlier revision (checked out with ``git worktree``), which loads ``model_int8.onnx`` (u8 x
  u8) whatever the CPU;
- this checkout as users get it (the form chosen for this CPU), and each form forced.

Per setting: texts/s on 1,024 STS-B sentences and 128 passages of ~250 tokens (batch 32,
2 threads, the median of three passes after an untimed one), one query's latency (median of
200), and the cold start (a fresh ``python -c`` that imports gist_onnx, loads the int8 graph and
encodes one text). Then the
vectors: the two forms' largest difference on the sentences and passages, and whether ONNX
Runtime's u8 x s8 product is exact on this CPU (a product whose int16 pairs would overflow).

Writes INT8_FORMS.md and int8_forms.json in this CPU's results folder
(benchmarks/results/<family>/).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.append(str(ROOT))  # the clone, last: tests.support, export.sts
from common import add_model_argument, machine_record, model_folder, results_dir  # noqa: E402
from export.sts import load_sts  # noqa: E402

SPEED = """
import json, statistics, sys, time
from gist_onnx import GistEncoder
a = json.loads(sys.argv[1])
kwargs = {"int8_form": a["form"]} if a["form"] else {}
enc = GistEncoder(a["model"], variant="int8", threads=2, **kwargs)
loads = json.load(open(a["texts"]))
out = {"form": getattr(enc, "int8_form", None) or "u8u8 (as stored)"}
for name, texts in loads.items():
    enc.encode(texts, batch_size=32)
    rates = []
    for _ in range(3):
        t = time.perf_counter(); enc.encode(texts, batch_size=32)
        rates.append(len(texts) / (time.perf_counter() - t))
    out[name] = statistics.median(rates)
query = loads["sentences"][0]
times = []
for _ in range(200):
    t = time.perf_counter(); enc.encode([query]); times.append(time.perf_counter() - t)
out["query_ms"] = statistics.median(times) * 1000
print(json.dumps(out))
"""

COLD = """
from gist_onnx import GistEncoder
GistEncoder(MODEL, variant="int8"FORM).encode(["a short query"])
"""

VECTORS = """
import json, sys
import numpy as np
from gist_onnx import GistEncoder
a = json.loads(sys.argv[1])
loads = json.load(open(a["texts"]))
texts = loads["sentences"] + loads["passages"]
u8u8 = GistEncoder(a["model"], variant="int8", int8_form="u8u8").encode(texts)
u8s8 = GistEncoder(a["model"], variant="int8", int8_form="u8s8").encode(texts)
cos = (u8u8 * u8s8).sum(axis=1)
diff = float(np.abs(u8u8 - u8s8).max())
print(json.dumps({"max_abs_diff": diff, "worst_cosine": float(cos.min())}))
"""

PROBE = """
import json
import numpy as np, onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
rng = np.random.default_rng(0)
a = rng.integers(200, 256, size=(8, 64), dtype=np.uint8)
w = rng.integers(100, 128, size=(64, 16), dtype=np.int8)
g = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "probe",
    [helper.make_tensor_value_info("A", TensorProto.UINT8, [None, 64])],
    [helper.make_tensor_value_info("Y", TensorProto.INT32, None)],
    [numpy_helper.from_array(w, "B")])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
print(json.dumps(bool((s.run(None, {"A": a})[0] == a.astype(np.int64) @ w.astype(np.int64)).all())))
"""


def workloads(path: Path) -> None:
    sentences = load_sts("stsb").sentences[:1024]
    passages, current = [], []
    for sentence in load_sts("stsb").sentences[1024:]:
        current.append(sentence)
        if sum(len(s.split()) for s in current) >= 200:
            passages.append(" ".join(current))
            current = []
        if len(passages) == 128:
            break
    path.write_text(json.dumps({"sentences": sentences, "passages": passages}))


def child(tree: Path, code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"failed in {tree}: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def cold_start(tree: Path, model: Path, form: str | None) -> float:
    code = COLD.replace("MODEL", repr(str(model))).replace(
        "FORM", f", int8_form={form!r}" if form else ""
    )
    started = time.perf_counter()
    child(tree, code + "\nprint('ok')")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_argument(parser)
    parser.add_argument("--baseline", default="c43aabf", help="the earlier revision (git)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    model = model_folder(args.model).resolve()
    machine = machine_record()
    rows: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        texts = work / "texts.json"
        workloads(texts)
        baseline = work / "baseline"
        git = ["git", "-C", str(ROOT), "worktree"]
        subprocess.run([*git, "add", "-q", "--detach", str(baseline), args.baseline], check=True)
        try:
            settings = {
                f"revision {args.baseline} (u8 x u8 everywhere)": (baseline, None),
                f"this checkout, as chosen here ({machine['int8_form']})": (ROOT, None),
                "this checkout, u8u8 forced": (ROOT, "u8u8"),
                "this checkout, u8s8 forced": (ROOT, "u8s8"),
            }
            for round_ in range(args.rounds):
                for label, (tree, form) in settings.items():
                    payload = json.dumps({"model": str(model), "form": form, "texts": str(texts)})
                    row = json.loads(child(tree, SPEED, payload))
                    row["cold_s"] = cold_start(tree, model, form)
                    rows.setdefault(label, []).append(row)
                    print(f"round {round_ + 1}, {label}: {row}", flush=True)
        finally:
            subprocess.run([*git, "remove", "--force", str(baseline)], check=False)
        payload = json.dumps({"model": str(model), "texts": str(texts)})
        vectors = json.loads(child(ROOT, VECTORS, payload))
        exact = json.loads(child(ROOT, PROBE))
    keys = ("sentences", "passages", "query_ms", "cold_s")
    medians = {
        label: {key: statistics.median(r[key] for r in runs) for key in keys}
        | {"form": runs[0]["form"]}
        for label, runs in rows.items()
    }
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine,
        "baseline": args.baseline,
        "rounds": args.rounds,
        "medians": medians,
        "raw": rows,
        "vectors": vectors,
        "u8s8_exact_here": exact,
    }
    out = results_dir(str(machine["family"]))
    (out / "int8_forms.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "INT8_FORMS.md").write_text(render(results))
    print(render(results))
    return 0


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    chosen = next(v for k, v in r["medians"].items() if k.startswith("this checkout, as"))
    base = next(v for k, v in r["medians"].items() if k.startswith("revision"))
    lines = [
        "# The int8 graph's two forms on this CPU",
        "",
        f"Written by `python benchmarks/studies/int8_forms.py --baseline {r['baseline']} "
        f"--rounds {r['rounds']}` ({r['date']}) on {m['cpu']} ({m['family']}: "
        f"{' '.join(m['flags'])}), {m['cores']} cores; stand-in weights, 2 threads, batch 32; "
        "each setting in its own process (three timed passes), rounds interleaved, medians. "
        "Settings that run the same form run the same code: their difference is this machine's "
        "noise. Cold start: a fresh "
        "process that imports gist_onnx, loads the int8 graph and encodes one text.",
        "",
        "| setting | form run | sentences/s | passages/s | one query | cold start |",
        "|---|---|---|---|---|---|",
    ]
    for label, row in r["medians"].items():
        lines.append(
            f"| {label} | {row['form']} | {row['sentences']:,.0f} | {row['passages']:,.1f} | "
            f"{row['query_ms']:.2f} ms | {row['cold_s'] * 1000:.0f} ms |"
        )
    v = r["vectors"]
    lines += [
        "",
        f"As chosen here against the earlier revision: sentences "
        f"{chosen['sentences'] / base['sentences']:.2f}x, passages "
        f"{chosen['passages'] / base['passages']:.2f}x, cold start "
        f"{(chosen['cold_s'] - base['cold_s']) * 1000:+.0f} ms.",
        "",
        f"ONNX Runtime's u8 x s8 product is {'exact' if r['u8s8_exact_here'] else 'NOT exact'} "
        f"on this CPU (a product whose int16 pairs overflow); the two forms' vectors of the "
        f"same texts: largest difference {v['max_abs_diff']:.2e}, worst cosine "
        f"{v['worst_cosine']:.6f}"
        + (
            " (u8 x s8 saturates here: the u8 x u8 form is the one chosen)."
            if not r["u8s8_exact_here"]
            else "."
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
