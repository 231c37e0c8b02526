"""Seven-bit weights: could the fast u8 x s8 kernel be made exact on CPUs without VNNI?

    python benchmarks/studies/int8_seven_bits.py [--rounds 5] [--model DIR]

Without VNNI, ONNX Runtime's u8 x s8 product adds pairs of u8 x s8 products in int16 with
saturation: 255 x 127 x 2 passes 32,767. Weights kept to -63..63 (ONNX Runtime's
``reduce_range``) cannot overflow (255 x 63 x 2 = 32,130), so that kernel would be exact on every
x86 CPU, and it is faster there than the u8 x u8 one. The price is half the weight levels. This
study builds that graph from the export's int8 graph (each level halved and rounded, each weight
scale doubled; nothing else changed) and measures what it would give:

- quality: cosine to sentence-transformers on the export's check texts, against the export's
  int8 gate, and STS-B Spearman, beside the int8 graph as exported;
- exactness: its vectors against the same seven-bit levels stored for the u8 x u8 kernel;
- speed: texts/s on 1,024 STS-B sentences and 128 passages of ~250 tokens, each graph in its own
  process, rounds interleaved, medians (as ``int8_forms.py``).

Writes INT8_SEVEN_BITS.md and int8_seven_bits.json in this CPU's results folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.append(str(ROOT))  # the clone, last: tests.support, export.sts
sys.path.insert(0, str(HERE))
from int8_forms import SPEED, child, workloads  # noqa: E402

from common import (  # noqa: E402
    add_model_argument,
    machine_record,
    model_folder,
    results_dir,
    stand_in,
)
from export.sts import load_sts, spearman  # noqa: E402

PRODUCT = "MatMulIntegerToFloat"


def seven_bit_folder(export: Path, out: Path, *, signed: bool) -> Path:
    """A copy of ``export`` whose ``model_int8.onnx`` holds seven-bit weight levels: stored as
    int8 for the u8 x s8 kernel (``signed``) or around 128 for the u8 x u8 one. No manifest: it
    vouches for the export's files, not these."""
    import onnx
    from onnx import numpy_helper

    out.mkdir(parents=True)
    for item in export.iterdir():
        if item.name.startswith("model") or item.name == "gist_onnx_manifest.json":
            continue
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, out / item.name)
    model = onnx.load(str(export / "model_int8.onnx"), load_external_data=True)
    inits = {t.name: t for t in model.graph.initializer}
    done: set[str] = set()
    for node in model.graph.node:
        if node.op_type != PRODUCT or node.input[1] in done:
            continue
        weight, scale = node.input[1], node.input[3]
        done.add(weight)
        levels = numpy_helper.to_array(inits[weight]).astype(np.int16) - 128
        seven = np.clip(np.round(levels / 2.0), -63, 63).astype(np.int16)
        if signed:
            stored = numpy_helper.from_array(seven.astype(np.int8), weight)
        else:
            stored = numpy_helper.from_array((seven + 128).astype(np.uint8), weight)
        inits[weight].CopyFrom(stored)
        doubled = numpy_helper.to_array(inits[scale]) * 2
        inits[scale].CopyFrom(numpy_helper.from_array(doubled.astype(np.float32), scale))
    for node in model.graph.node:  # symmetric int8 weights: no zero point, on every product
        if node.op_type == PRODUCT and signed and node.input[1] in done:
            node.input[5] = ""
    onnx.save(
        model,
        str(out / "model_int8.onnx"),
        save_as_external_data=True,
        location="model_int8.onnx.data",
    )
    return out


def quality(export: Path, seven: Path, exact_twin: Path) -> dict[str, Any]:
    from gist_onnx import GistEncoder
    from gist_onnx.export.check import THRESHOLDS, cosines, reference_vectors
    from gist_onnx.export.texts import PARITY_TEXTS

    reference = reference_vectors(stand_in(), PARITY_TEXTS)
    stsb = load_sts("stsb")
    out: dict[str, Any] = {"thresholds": dict(THRESHOLDS["int8"])}
    vectors = {}
    for label, folder in (("as exported (u8 x u8)", export), ("seven-bit (u8 x s8)", seven)):
        encoder = GistEncoder(folder, variant="int8", int8_form="u8u8")
        vectors[label] = encoder.encode(list(PARITY_TEXTS))
        cos = cosines(vectors[label], reference)
        out[label] = {
            "worst_cosine": float(cos.min()),
            "mean_cosine": float(cos.mean()),
            "stsb_spearman": round(spearman(stsb, encoder.encode), 2),
        }
    twin = GistEncoder(exact_twin, variant="int8", int8_form="u8u8").encode(list(PARITY_TEXTS))
    out["seven_bit_max_abs_diff_to_u8u8_kernel"] = float(
        np.abs(vectors["seven-bit (u8 x s8)"] - twin).max()
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_argument(parser)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    export = model_folder(args.model).resolve()
    machine = machine_record()
    rows: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        seven = seven_bit_folder(export, work / "seven", signed=True)
        twin = seven_bit_folder(export, work / "twin", signed=False)
        texts = work / "texts.json"
        workloads(texts)
        settings = {
            f"as exported, the form chosen here ({machine['int8_form']})": (export, None),
            "seven-bit weights, u8 x s8": (seven, "u8u8"),  # u8u8: loads model_int8.onnx
        }
        for round_ in range(args.rounds):
            for label, (folder, form) in settings.items():
                payload = json.dumps({"model": str(folder), "form": form, "texts": str(texts)})
                row = json.loads(child(ROOT, SPEED, payload))
                rows.setdefault(label, []).append(row)
                print(f"round {round_ + 1}, {label}: {row}", flush=True)
        measured = quality(export, seven, twin)
    medians = {
        label: {key: statistics.median(r[key] for r in runs) for key in ("sentences", "passages")}
        for label, runs in rows.items()
    }
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine,
        "rounds": args.rounds,
        "speed": medians,
        "raw": rows,
        "quality": measured,
    }
    out = results_dir(str(machine["family"]))
    (out / "int8_seven_bits.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "INT8_SEVEN_BITS.md").write_text(render(results))
    print(render(results))
    return 0


def render(r: dict[str, Any]) -> str:
    m, q = r["machine"], r["quality"]
    gate = q["thresholds"]
    speeds = list(r["speed"].values())
    lines = [
        "# Seven-bit weights: the u8 x s8 kernel made exact without VNNI, at a price",
        "",
        f"Written by `python benchmarks/studies/int8_seven_bits.py --rounds {r['rounds']}` "
        f"({r['date']}) on {m['cpu']} ({m['family']}: {' '.join(m['flags'])}), {m['cores']} "
        "cores; stand-in weights, 2 threads, batch 32; each graph in its own process, rounds "
        "interleaved, medians. The seven-bit graph is the export's int8 graph with each weight "
        "level halved and rounded (-63..63) and each weight scale doubled.",
        "",
        "| graph | sentences/s | passages/s | worst cosine | mean cosine | STS-B Spearman |",
        "|---|---|---|---|---|---|",
    ]
    for (label, speed), key in zip(
        r["speed"].items(), ("as exported (u8 x u8)", "seven-bit (u8 x s8)"), strict=True
    ):
        row = q[key]
        lines.append(
            f"| {label} | {speed['sentences']:,.0f} | {speed['passages']:,.1f} | "
            f"{row['worst_cosine']:.5f} | {row['mean_cosine']:.5f} | {row['stsb_spearman']:.2f} |"
        )
    seven = q["seven-bit (u8 x s8)"]
    diff = q["seven_bit_max_abs_diff_to_u8u8_kernel"]
    passes = (
        seven["worst_cosine"] >= gate["worst_cosine"]
        and seven["mean_cosine"] >= gate["mean_cosine"]
    )
    lines += [
        "",
        f"Speed, seven-bit over as exported: sentences "
        f"{speeds[1]['sentences'] / speeds[0]['sentences']:.2f}x, passages "
        f"{speeds[1]['passages'] / speeds[0]['passages']:.2f}x. Cosines are to "
        f"sentence-transformers on the export's check texts; the export's int8 gate is worst "
        f"{gate['worst_cosine']}, mean {gate['mean_cosine']}: the seven-bit graph "
        + ("passes it." if passes else "fails it, so it is not shipped.")
        + " Its vectors against the same levels run by the u8 x u8 kernel: largest difference "
        f"{diff:.1e}" + (" (exact)." if diff <= 1e-6 else " (NOT exact here)."),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
