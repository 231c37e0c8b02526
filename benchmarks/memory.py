"""Memory: peak RSS and RSS after ``encode`` returns, on inputs that used to blow it up.

    python benchmarks/memory.py [--short-texts 1000000] [--calls 4000]

Each case runs in a fresh process, which reports its own figures (peak from getrusage, current
RSS from /proc/self/status):

(a) 600 texts of 100 KB each (60 MB of text): gist-onnx int8 and fp32, and sentence-transformers
    (torch) on the same texts; peak, and RSS after the call returned (less the texts themselves);
(b) 1M short texts from a generator (the count unknown to the encoder): peak against the size of
    the output (n x 384 float32);
(c) alternating 1-token and 256-token batches for a few thousand calls: RSS sampled along the way
    should stay flat.

Writes benchmarks/results/<family>/memory.json and the "Memory" section of
benchmarks/results/<family>/RESULTS.md (between its markers; benchmarks/run.py keeps it when it
rewrites the file).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sections
from common import add_model_argument, model_folder, stand_in

HERE = Path(__file__).resolve().parent

PRELUDE = """
import gc, json, resource, sys, time
def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
WORDS = ("the committee met on tuesday to review the proposal for a new library near the "
         "river and several members raised concerns about cost traffic and access").split()
def long_text(i, size=100_000):
    words, n, k = [], 0, i
    while n < size:
        k = (k * 1103515245 + 12345) % 2**31
        w = WORDS[k % len(WORDS)]
        words.append(w); n += len(w) + 1
    return " ".join(words)[:size]
"""

CASES = {
    "long_gist": """
from gist_onnx import GistEncoder
enc = GistEncoder(MODEL, variant=VARIANT)
texts = [long_text(i, SIZE) for i in range(600)]
gc.collect(); base = rss_mib()
t = time.perf_counter(); out = enc.encode(texts); elapsed = time.perf_counter() - t
gc.collect()
print(json.dumps({"peak": peak_mib(), "after": rss_mib(), "base": base, "s": elapsed,
                  "shape": list(out.shape)}))
""",
    # What one large call leaves behind: the encoder warmed up first (its runs at once, a full
    # 256-token run), so that what it makes once (a second session, thread pools) is not counted.
    "long_gist_warm": """
from gist_onnx import GistEncoder, heap
if not GIVE_BACK:
    heap.TRIM_AFTER_TOKENS = 1 << 62  # as before the heap was given back
enc = GistEncoder(MODEL, variant=VARIANT)
texts = [long_text(i, SIZE) for i in range(600)]
enc.encode(["a short warm-up text %d" % i for i in range(64)])
enc.encode([long_text(i, 1500) for i in range(8)])
gc.collect(); base = rss_mib()
t = time.perf_counter(); out = enc.encode(texts); elapsed = time.perf_counter() - t
gc.collect()
print(json.dumps({"peak": peak_mib(), "after": rss_mib(), "base": base, "s": elapsed,
                  "held": rss_mib() - base, "shape": list(out.shape)}))
""",
    "long_st": """
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(SOURCE, device="cpu")
texts = [long_text(i) for i in range(600)]
gc.collect(); base = rss_mib()
t = time.perf_counter(); out = model.encode(texts, batch_size=32); elapsed = time.perf_counter() - t
gc.collect()
print(json.dumps({"peak": peak_mib(), "after": rss_mib(), "base": base, "s": elapsed,
                  "shape": list(out.shape)}))
""",
    "many_short": """
from gist_onnx import GistEncoder
enc = GistEncoder(MODEL, variant="int8")
def texts():
    for i in range(COUNT):
        yield WORDS[i % len(WORDS)]
gc.collect(); base = rss_mib()
t = time.perf_counter()
out = enc.encode(texts(), batch_size=128)
elapsed = time.perf_counter() - t
print(json.dumps({"peak": peak_mib(), "after": rss_mib(), "base": base, "s": elapsed,
                  "output_mib": out.nbytes / 2**20, "shape": list(out.shape)}))
""",
    "alternating": """
from gist_onnx import GistEncoder
enc = GistEncoder(MODEL, variant="int8")
short, long = ["a"], [long_text(7, 3000)]
samples = []
for call in range(CALLS):
    enc.encode(short if call % 2 else long)
    if call % (CALLS // 20) == 0:
        samples.append(rss_mib())
print(json.dumps({"peak": peak_mib(), "after": rss_mib(), "samples": samples}))
""",
}


def run_case(python: str, case: str, **values: Any) -> dict[str, Any]:
    code = PRELUDE + CASES[case]
    for key, value in values.items():
        code = code.replace(key, repr(value))
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{case} failed: {proc.stderr[-1500:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def render(r: dict[str, Any]) -> str:
    a, b, c = r["long"], r["many_short"], r["alternating"]
    lines = [
        "## Memory",
        "",
        f"Written by `python benchmarks/memory.py` ({r['date']}); each case in a fresh process, "
        "RSS in MiB as the process reports it (peak: getrusage; after: VmRSS once `encode` "
        "returned). Stand-in weights.",
        "",
        "(a) 600 texts of 100 KB (60 MB of text; the texts alone are ~60 MiB of the RSS), and, "
        "for comparison, 600 texts just long enough to fill 256 tokens: what stays after the call "
        "is the working set (ONNX Runtime's arena, the allocator's free lists) that any texts of "
        "256 tokens leave, reused by the next call:",
        "",
        "| stack | peak | after the call | RSS before the call | time |",
        "|---|---|---|---|---|",
    ]
    for label, row in a.items():
        lines.append(
            f"| {label} | {row['peak']:.0f} | {row['after']:.0f} | {row['base']:.0f} | "
            f"{row['s']:.1f} s |"
        )
    held = r.get("held", {})
    if held:
        lines += [
            "",
            "(a'') What one such call leaves behind: the encoder warmed up first (so that what it "
            "makes once, its second session for runs at once and its thread pools, is not "
            "counted), then RSS after the call less RSS before it, with the heap given back to "
            "the system after large calls (`gist_onnx.heap`) and without:",
            "",
            "| stack | held after the call | peak | RSS before the call |",
            "|---|---|---|---|",
        ]
        for label, row in held.items():
            lines.append(f"| {label} | {row['held']:.0f} | {row['peak']:.0f} | {row['base']:.0f} |")
    lines += [
        "",
        f"(b) {b['shape'][0]:,} short texts from a generator (count unknown to the encoder), int8: "
        f"output {b['output_mib']:.0f} MiB, peak {b['peak']:.0f} MiB (output + "
        f"{b['peak'] - b['output_mib']:.0f} MiB; RSS before the call {b['base']:.0f} MiB), "
        f"{b['s']:.0f} s.",
        "",
        f"(c) {r['calls']:,} calls alternating a 1-token and a 256-token text, int8: RSS sampled "
        f"every {r['calls'] // 20} calls: {', '.join(f'{x:.0f}' for x in c['samples'])} MiB "
        f"(peak {c['peak']:.0f}).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_argument(parser)
    parser.add_argument("--short-texts", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=4000)
    args = parser.parse_args()
    model = str(model_folder(args.model))
    python = sys.executable
    long: dict[str, Any] = {}
    for variant in ("int8", "fp32"):
        print(f"(a) gist-onnx {variant} ...", flush=True)
        long[f"gist-onnx {variant}"] = run_case(
            python, "long_gist", MODEL=model, VARIANT=variant, SIZE=100_000
        )
    # The working set any 256-token texts need, for comparison with what (a) keeps after the call.
    print("(a') gist-onnx int8 on texts of 1,500 characters ...", flush=True)
    long["gist-onnx int8, 600 texts of 1,500 characters (~256 tokens each)"] = run_case(
        python, "long_gist", MODEL=model, VARIANT="int8", SIZE=1_500
    )
    held: dict[str, Any] = {}
    for variant in ("int8", "fp32"):
        for trim in (True, False):
            label = f"gist-onnx {variant}, heap {'given back' if trim else 'kept'}"
            print(f"(a'') {label} ...", flush=True)
            held[label] = run_case(
                python, "long_gist_warm", MODEL=model, VARIANT=variant, SIZE=100_000, GIVE_BACK=trim
            )
    print("(a) sentence-transformers ...", flush=True)
    long["sentence-transformers (torch)"] = run_case(python, "long_st", SOURCE=str(stand_in()))
    print(f"(b) {args.short_texts:,} short texts ...", flush=True)
    many = run_case(python, "many_short", MODEL=model, COUNT=args.short_texts)
    print(f"(c) {args.calls} alternating calls ...", flush=True)
    alternating = run_case(python, "alternating", MODEL=model, CALLS=args.calls)
    r = {
        "date": time.strftime("%Y-%m-%d"),
        "long": long,
        "held": held,
        "many_short": many,
        "alternating": alternating,
        "calls": args.calls,
    }
    sections.publish("memory", r, render(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
