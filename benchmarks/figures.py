"""The figures quoted in the README's and the docs' prose, each computed from a committed results
file (its one source).

A figure sits in the markdown between two comments, which neither GitHub nor the docs site show::

    a Lambda cold start takes <!-- fig:serverless.cold -->0.14 s<!-- /fig -->.

``python benchmarks/headline.py --write`` rewrites every marked figure from the results files, and
a test fails when a page's text and the figure computed here differ, when a page names a figure
this table lacks, or when a page quotes a measurement outside a marker.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
GPU_RESULTS = HERE / "results" / "gpu" / "gpu_check.json"
MARKER = re.compile(r"<!-- fig:([a-z0-9_.-]+) -->(.*?)<!-- /fig -->", re.DOTALL)


# Results that depend on the CPU live in one folder per kind of CPU (benchmarks/results/<family>/,
# see common.results_dir). Where several kinds have a report of one name, the prose quotes the
# first of these (and says which CPU); the README's headline table shows every kind's rows.
PROSE_FAMILIES = ("avx512-vnni", "amx", "avx-vnni", "avx2", "arm64")


def families(report: str = "results") -> list[str]:
    """The kinds of CPU with a ``report`` (``results``: benchmarks/run.py's), in prose order."""
    found = sorted(p.parent.name for p in RESULTS.glob(f"*/{report}.json"))
    order = {family: i for i, family in enumerate(PROSE_FAMILIES)}
    return sorted(found, key=lambda f: (order.get(f, len(order)), f))


@cache
def _load(name: str, family: str | None = None) -> Any:
    if name == "gpu":
        path = GPU_RESULTS
    elif family is not None:
        path = RESULTS / family / f"{name}.json"
    else:
        kinds = families(name)
        path = RESULTS / kinds[0] / f"{name}.json" if kinds else RESULTS / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _range(values: list[float], fmt: str, unit: str = "") -> str:
    low, high = f"{min(values):{fmt}}", f"{max(values):{fmt}}"
    return f"{low}{unit}" if low == high else f"{low}-{high}{unit}"


# ---------------------------------------------------------------- results.json (benchmarks/run.py)
def rate(stack: str, key: str, family: str | None = None) -> float:
    """Texts a second of ``stack`` on ``key`` (workload@batch), the median of the rounds, on the
    CPU ``family`` (default: the prose's)."""
    r = _load("results", family)
    count = r["workloads"][key.split("@", maxsplit=1)[0]]["count"]
    return float(count / statistics.median(r["raw"]["seconds"][stack][key]))


def _cpu_ratio(
    stack: str, over: str, keys: tuple[str, ...], family: str | None = None, fmt: str = ".1f"
) -> str:
    return _range([rate(stack, k, family) / rate(over, k, family) for k in keys], fmt, "x")


def _query(stack: str, family: str | None = None) -> float:
    """One query's latency (batch 1, p50), the median of the rounds."""
    return float(statistics.median(_load("results", family)["raw"]["latency_ms"][stack]["p50"]))


def coldstart(stack: str, family: str | None = None) -> float:
    return float(statistics.median(_load("results", family)["raw"]["coldstart"][stack]["wall_s"]))


# ---------------------------------------------------------------- the other results files
def _serverless(case: str, key: str) -> float:
    return float(_load("serverless")["cold"][case][key])


def _cold_delta_ms(case: str, than: str) -> float:
    """How much longer ``case``'s cold start took than ``than``'s, in ms."""
    return (_serverless(case, "cold_s") - _serverless(than, "cold_s")) * 1000


def _size_mb(*keys: str) -> str:
    return f"{sum(_load('results')['sizes'][k] for k in keys):,.0f} MB"


def _embedrate(key: str, count: str) -> float:
    e = _load("embed")
    return float(e[count] / e[key]["s"])


def _quality_check(variant: str, key: str) -> float:
    return float(_load("quality")["variants"][variant]["check"][key])


def _seven_bits() -> Any:
    return _load("int8_seven_bits", "avx2")


def _sts_drop() -> float:
    sts = _load("quality")["sts"]
    return max(sts["gist-onnx fp32"][n] - sts["gist-onnx int8"][n] for n in sts["gist-onnx fp32"])


def _server(setting: str, mode: str, key: str) -> float:
    return float(_load("server")["settings"][setting][mode][key])


ZIPF = "32 clients x 1 repeated query (Zipf)"


def _zipf_gain() -> float:
    return _server(ZIPF, "cache on", "requests_per_s") / _server(
        ZIPF, "cache off", "requests_per_s"
    )


def _batching_gain() -> float:
    setting = "32 clients x 1 text"
    return _server(setting, "batching", "requests_per_s") / _server(
        setting, "no batching", "requests_per_s"
    )


def _stall(route: str, key: str) -> float:
    row = next(r for r in _load("server_stall")["rows"] if r["route"] == route)
    return float(row[key])


def _gpu(stack: str, key: str) -> float:
    return float(_load("gpu")["speed"][stack][key])


def _gpu_best(key: str, pick: Callable[..., float] = max) -> float:
    s = _load("gpu")["speed"]
    return pick(s[f"sentence-transformers {d}"][key] for d in ("float32", "float16"))


def _held(case: str) -> float:
    """What one call of 600 texts of 100 KB left in the process (the memory report's (a''),
    first written on the AVX2 machine)."""
    return float(_load("memory", "avx2")["held"][f"gist-onnx {case}"]["held"])


def _first_hour(key: str) -> float:
    return float(_load("first_hour")[key])


FIGURES: dict[str, Callable[[], str]] = {
    # benchmarks/run.py: every stack on the CPU
    "cpu.int8-over-fp32": lambda: _cpu_ratio(
        "gist-int8", "gist-fp32", ("sentences@32", "passages@32")
    ),
    "cpu.int8-over-st": lambda: _cpu_ratio(
        "gist-int8", "st-torch", ("sentences@32", "sentences@128", "passages@32", "passages@128")
    ),
    "cpu.int8-over-st-sentences": lambda: _cpu_ratio(
        "gist-int8", "st-torch", ("sentences@32", "sentences@128")
    ),
    "cpu.int8-over-st-passages": lambda: _cpu_ratio(
        "gist-int8", "st-torch", ("passages@32", "passages@128")
    ),
    "cpu.fp32-over-st-sentences": lambda: _cpu_ratio(
        "gist-fp32", "st-torch", ("sentences@32", "sentences@128")
    ),
    "cpu.fp32-over-st-passages": lambda: _cpu_ratio(
        "gist-fp32", "st-torch", ("passages@32", "passages@128")
    ),
    "cpu.st-int8-over-st-sentences": lambda: _cpu_ratio(
        "st-onnx-int8", "st-torch", ("sentences@32", "sentences@128")
    ),
    "cpu.coldstart-int8-fraction": lambda: (
        f"1/{coldstart('st-torch') / coldstart('gist-int8'):.0f}"
    ),
    "cpu.coldstart-fp32-fraction": lambda: (
        f"1/{coldstart('st-torch') / coldstart('gist-fp32'):.0f}"
    ),
    "cpu.full-run": lambda: f"{_load('results')['elapsed_s'] / 60:.0f} minutes",
    # the same run on an AVX2 CPU without VNNI (the int8 graph's u8 x u8 form)
    "cpu-avx2.int8-over-st-sentences": lambda: _cpu_ratio(
        "gist-int8", "st-torch", ("sentences@32", "sentences@128"), "avx2"
    ),
    "cpu-avx2.int8-over-st-passages": lambda: _cpu_ratio(
        "gist-int8", "st-torch", ("passages@32", "passages@128"), "avx2"
    ),
    "cpu-avx2.int8-over-ct2-int8": lambda: _cpu_ratio(
        "gist-int8",
        "ct2-int8",
        ("sentences@32", "sentences@128", "passages@32", "passages@128"),
        "avx2",
        ".2f",
    ),
    "cpu-avx2.int8-over-openvino": lambda: _cpu_ratio(
        "gist-int8",
        "openvino-fp32",
        ("sentences@32", "sentences@128", "passages@32", "passages@128"),
        "avx2",
        ".2f",
    ),
    "cpu-avx2.query-ct2-over-int8": lambda: (
        f"{_query('ct2-int8', 'avx2') / _query('gist-int8', 'avx2'):.1f}x"
    ),
    "cpu-avx2.ct2-int8-stsb": lambda: (
        f"{_load('results', 'avx2')['quality']['ct2-int8']['stsb']:.2f}"
    ),
    "cpu-avx2.int8-stsb": lambda: f"{_load('results', 'avx2')['quality']['gist-int8']['stsb']:.2f}",
    # benchmarks/studies/int8_seven_bits.py, on the AVX2 CPU
    "avx2.seven-bit-speed": lambda: _range(
        [
            _seven_bits()["speed"]["seven-bit weights, u8 x s8"][load]
            / next(v for k, v in _seven_bits()["speed"].items() if k.startswith("as exported"))[
                load
            ]
            for load in ("sentences", "passages")
        ],
        ".2f",
        "x",
    ),
    "avx2.seven-bit-mean": lambda: (
        f"{_seven_bits()['quality']['seven-bit (u8 x s8)']['mean_cosine']:.4f}"
    ),
    "cpu.venv": lambda: _size_mb("gist_venv_mb"),
    "cpu.venv-int8": lambda: _size_mb("gist_venv_mb", "int8_model_mb"),
    "cpu.st-venv": lambda: _size_mb("st_venv_mb"),
    # benchmarks/serverless.py
    "serverless.cold": lambda: f"{_serverless('2 CPUs', 'cold_s'):.2f} s",
    "serverless.peak-rss": lambda: f"{_serverless('2 CPUs', 'peak_rss_mib'):.0f} MiB",
    "serverless.no-pyc": lambda: (
        f"+{_cold_delta_ms('2 CPUs, no .pyc in the bundle', '2 CPUs'):.0f} ms"
    ),
    "serverless.manifest-check": lambda: (
        f"{_cold_delta_ms('2 CPUs', '2 CPUs, manifest check off'):.0f} ms"
    ),
    "serverless.warm-p50": lambda: f"{_serverless('2 CPUs', 'warm_p50_ms'):.2f} ms",
    # benchmarks/quality.py: the export's check and STS
    "quality.int8-worst": lambda: f"{_quality_check('int8', 'worst_cosine'):.5f}",
    "quality.int8-mean": lambda: f"{_quality_check('int8', 'mean_cosine'):.5f}",
    "quality.fp32-worst": lambda: f"{_quality_check('fp32', 'worst_cosine'):.7f}",
    "quality.sts-drop": lambda: f"{_sts_drop():.2f}",
    "quality.check-texts": lambda: f"{int(_quality_check('fp32', 'texts'))}",
    "quality.sts-sets": lambda: f"{len(_load('quality')['sts_sets'])}",
    # benchmarks/embed.py
    "embed.rate": lambda: f"{_embedrate('embed', 'lines'):,.0f} texts/s",
    "embed.over-encode": lambda: (
        f"{_embedrate('embed', 'lines') / _embedrate('encode', 'lines'):.2f}x"
    ),
    "embed.peak": lambda: f"{_load('embed')['embed']['peak_mib']:.0f} MiB",
    "embed.encode-peak": lambda: f"{_load('embed')['encode']['peak_mib']:.0f} MiB",
    "embed.many-rate": lambda: f"{_embedrate('embed_many', 'many'):,.0f} texts/s",
    "embed.many-peak": lambda: f"{_load('embed')['embed_many']['peak_mib']:.0f} MiB",
    "embed.many-output": lambda: f"{_load('embed')['embed_many']['output_mib']:,.0f} MiB",
    # benchmarks/ray_job.py
    "ray.rate": lambda: f"{_load('ray_job')['texts'] / _load('ray_job')['ray_job_s']:,.0f} texts/s",
    "ray.encode-rate": lambda: (
        f"{_load('ray_job')['texts'] / _load('ray_job')['encode_s']:,.0f} texts/s"
    ),
    "ray.over-encode": lambda: (
        f"{_load('ray_job')['encode_s'] / _load('ray_job')['ray_job_s']:.2f}x"
    ),
    "ray.startup": lambda: f"{_load('ray_job')['ray_startup_s']:.1f} s",
    # benchmarks/memory.py
    "memory.long-int8": lambda: f"{_load('memory')['long']['gist-onnx int8']['peak']:.0f} MiB",
    "memory.long-st": lambda: (
        f"{_load('memory')['long']['sentence-transformers (torch)']['peak']:,.0f} MiB"
    ),
    "memory.held-kept": lambda: f"{_held('int8, heap kept'):.0f} MiB",
    "memory.held-given-back": lambda: f"{_held('int8, heap given back'):.0f} MiB",
    # benchmarks/server.py
    "server.batching-gain": lambda: f"{_batching_gain():.1f}x",
    "server.batching-p99": lambda: f"{_server('32 clients x 1 text', 'batching', 'p99_ms'):.0f} ms",
    "server.nobatching-p99": lambda: (
        f"{_server('32 clients x 1 text', 'no batching', 'p99_ms'):.0f} ms"
    ),
    "server.32x1-of-ceiling": lambda: (
        f"{_server('32 clients x 1 text', 'batching', 'of_ceiling'):.2f}x"
    ),
    "server.32x1-rps": lambda: (
        f"{_server('32 clients x 1 text', 'batching', 'requests_per_s'):,.0f}"
    ),
    "server.32x1-other-cpu": lambda: (
        f"{_server('32 clients x 1 text', 'batching', 'other_cpu_us_per_request'):.0f} us"
    ),
    "server.zipf-gain": lambda: f"{_zipf_gain():.1f}x",
    "server.zipf-rps": lambda: f"{_server(ZIPF, 'cache on', 'requests_per_s'):,.0f}",
    "server.stall-request": lambda: f"{_stall('/tokenize', 'request_s'):.1f} s",
    "server.stall-megabytes": lambda: f"{_stall('/tokenize', 'megabytes'):.1f} MB",
    "server.stall-health": lambda: f"{_stall('/tokenize', 'health_median_ms'):.1f} ms",
    "server.stall-health-max": lambda: f"{_stall('/tokenize', 'health_max_ms'):.0f} ms",
    # benchmarks/gpu/gpu_check.py on an H200
    "gpu.sentences-ratio": lambda: (
        f"{_gpu('gist-onnx overlap', 'sentences_per_s') / _gpu_best('sentences_per_s'):.1f}x"
    ),
    "gpu.passages-ratio": lambda: (
        f"{_gpu('gist-onnx overlap', 'passages_per_s') / _gpu_best('passages_per_s'):.1f}x"
    ),
    "gpu.query-fraction": lambda: (
        f"1/{_gpu_best('one_query_ms', min) / _gpu('gist-onnx overlap', 'one_query_ms'):.0f}"
    ),
    "gpu.parity-worst": lambda: f"{_load('gpu')['parity_worst_cosine']:.7f}",
    # benchmarks/first_hour.py: a fresh clone's `make demo`
    "first-hour.demo-minutes": lambda: f"{_first_hour('demo_s') / 60:.1f} min",
    "first-hour.demo-venv": lambda: f"{_first_hour('venv_bytes') / 1e9:.1f} GB",
}


def value(name: str) -> str:
    """The figure ``name`` as the pages print it."""
    if name not in FIGURES:
        raise KeyError(f"no figure named {name!r} in benchmarks/figures.py")
    return FIGURES[name]()


def render(text: str) -> str:
    """``text`` with every marked figure recomputed."""
    return MARKER.sub(lambda m: f"<!-- fig:{m[1]} -->{value(m[1])}<!-- /fig -->", text)


def stale(text: str) -> list[str]:
    """The marked figures of ``text`` that differ from their results: 'name: page != computed'."""
    return [
        f"{m[1]}: {m[2]!r} != {value(m[1])!r}" for m in MARKER.finditer(text) if m[2] != value(m[1])
    ]
