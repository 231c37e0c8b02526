"""Docs tier: the README and the docs site cannot drift from the code.

Every python and shell block of README.md and docs/ runs against the stand-in export (or is
marked ``syntax`` / ``skip`` with its reason, see ``docs_blocks.py``), the site builds with
``mkdocs build --strict`` (a broken link or reference fails it), and every table and figure the
pages quote is the one ``benchmarks/headline.py`` generates from the committed results.
"""

from __future__ import annotations

import argparse
import html.parser
import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.docs_blocks import Block, as_json, blocks, syntax_error

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]  # docs/results/ are includes
ALL = [b for page in PAGES for b in blocks(page, ROOT)]
RUN_PAGES = sorted({b.page for b in ALL if b.check == "run"})

pytestmark = pytest.mark.docs


def test_every_block_is_run_or_says_why_not() -> None:
    counts = {c: sum(b.check == c for b in ALL) for c in ("run", "syntax", "skip")}
    assert counts["run"] >= 15, counts
    for block in ALL:
        assert block.check == "run" or len(block.reason) > 10, block


@pytest.mark.parametrize(
    "block", [b for b in ALL if b.check != "run"], ids=lambda b: f"{b.page}:{b.line}"
)
def test_blocks_not_run_still_parse(block: Block) -> None:
    """``syntax`` and ``skip`` blocks alike: what a reader copies at least parses."""
    assert syntax_error(block) is None


_USAGE = re.compile(r"\[--[\w-]+[^\]\n]*\]")


@pytest.mark.parametrize(
    "block", [b for b in ALL if b.language == "bash"], ids=lambda b: f"{b.page}:{b.line}"
)
def test_shell_blocks_hold_commands_not_usage(block: Block) -> None:
    """A reader pastes a shell block: ``[--arch x86_64|aarch64]`` would run a pipe. Optional
    flags belong in the text around it."""
    assert not _USAGE.search(block.code), _USAGE.search(block.code)


def _workdir(tmp: Path, exported: Path, exports: bool) -> Path:
    if not exports:  # a page that runs the export makes its own folder
        (tmp / "gist-onnx-model").symlink_to(exported, target_is_directory=True)
    (tmp / "export").symlink_to(ROOT / "export", target_is_directory=True)  # as in a clone
    (tmp / "texts.txt").write_text("What is the capital of France?\nParis is in France.\n")
    (tmp / "docs.jsonl").write_text('{"body": "A first document."}\n{"body": "A second one."}\n')
    (tmp / "table.csv").write_text('id,text\n1,"A first row"\n2,"A second row"\n')
    return tmp


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIST_ONNX_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(ROOT)) if p)
    env |= {
        "HF_HUB_OFFLINE": "1",  # a block that needs the hub must say so
        "HF_HUB_CACHE": str(tmp / "hf-cache"),
        "ANONYMIZED_TELEMETRY": "False",  # chroma
        "HOME": str(tmp),
    }
    return env


@pytest.mark.model
@pytest.mark.parametrize("page", RUN_PAGES)
def test_the_documented_blocks_run(page: str, exported: Path, tmp_path: Path) -> None:
    """The page's blocks, in order, in one folder: what a reader would type."""
    todo = [b for b in ALL if b.page == page and b.check == "run"]
    exports = any(tool in b.code for b in todo for tool in ("gist-onnx export", "to_onnx.py"))
    work = _workdir(tmp_path, exported, exports)
    out = tmp_path / "output.txt"
    with out.open("w") as handle:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "support" / "docs_blocks.py")],
            input=as_json(todo),
            text=True,
            cwd=work,
            env=_env(tmp_path),
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=900,
            check=False,
        )
    assert proc.returncode == 0, out.read_text()[-6000:]


def test_the_site_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra: pip install '.[docs]'")
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs is not None
    proc = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    site = tmp_path / "site"
    split = [
        f"{page.relative_to(site)}: {where}"
        for page in site.rglob("*.html")
        for where in _figures_outside_text(page.read_text(encoding="utf-8"))
    ]
    assert split == [], "a figure marker starts a source line, which splits its sentence:\n" + (
        "\n".join(split)
    )


class _FigureFinder(html.parser.HTMLParser):
    """Where in a rendered page a generated figure sits outside running text (a paragraph, a
    list item, a table cell): Markdown reads a source line that starts with an HTML comment as
    raw HTML, which ends the paragraph before it and starts none."""

    TEXT = frozenset(
        {
            "p",
            "li",
            "td",
            "th",
            "a",
            "em",
            "strong",
            "code",
            "span",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "summary",
            "dt",
            "dd",
            "figcaption",
        }
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.outside: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag not in {"br", "img", "hr", "input", "meta", "link", "source", "wbr"}:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open:
            while self.open.pop() != tag:
                pass

    def handle_comment(self, data: str) -> None:
        if data.strip().startswith("fig:") and not (self.TEXT & set(self.open)):
            self.outside.append(data.strip())


def _figures_outside_text(page: str) -> list[str]:
    finder = _FigureFinder()
    finder.feed(page)
    return finder.outside


def test_the_figure_check_finds_a_split_sentence() -> None:
    import markdown

    split = markdown.markdown("Int8 runs at\n<!-- fig:x -->5x<!-- /fig --> the speed.")
    assert _figures_outside_text(split) == ["fig:x"]
    whole = markdown.markdown("Int8 runs at <!-- fig:x -->5x<!-- /fig -->\nthe speed.")
    assert _figures_outside_text(whole) == []


def _benchmarks_module(name: str) -> Any:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def test_the_tables_are_the_generated_ones() -> None:
    headline = _benchmarks_module("headline")
    for page, start, end, table in headline.TABLES:
        text = (ROOT / page).read_text(encoding="utf-8")
        assert start in text and end in text, f"{page}: {start} ... {end}"
        inside = text.split(start, 1)[1].split(end, 1)[0]
        assert inside.strip() == table().strip(), f"{page}: python benchmarks/headline.py --write"


def test_every_figure_in_the_prose_is_the_generated_one() -> None:
    figures = _benchmarks_module("figures")
    marked = 0
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        marked += len(figures.MARKER.findall(text))
        assert figures.stale(text) == [], f"{page.name}: python benchmarks/headline.py --write"
    assert marked >= 40


# A measurement quoted in prose: a number with a unit of time, size, speed or ratio, or a cosine.
MEASURE = re.compile(
    r"(?<![\w.])[-+~]?\d[\d,]*(?:\.\d+)?(?:-\d[\d,]*(?:\.\d+)?)? ?"
    r"(?:ms|us|s|min|minutes|seconds|x|%|MB|MiB|GB|GiB|KB|KiB|"
    r"(?:texts|requests|sentences|passages)/s|GFLOP/s)(?![\w/])"
    r"|(?<![\d.])0\.99\d{2,}"
)
# Numbers with units that are not measurements: thresholds the tests enforce, defaults the code
# holds (the limits table is checked against the code below), the platforms' documented limits.
NOT_MEASURED = {
    "0.99999": "the fp32 threshold the parity tests and the export's check enforce",
    "0.9999": "the int8 threshold the web tests enforce (tests/test_web.py)",
    "8 MiB": "--max-body-bytes' default",
    "64 MiB": "--cache-bytes' default (checked below)",
    "16 KiB": "the largest body the server parses on its event loop (checked below)",
    "10 s": "--head-timeout's default; docker stop's and Cloud Run's grace after SIGTERM",
    "8 s": "what that 10 s grace leaves after the container recipe's --drain-delay 2",
    "32 KiB": "--max-header-bytes' default",
    "30 s": "--body-timeout's default; the drain's bound",
    "5 s": "uvicorn's keep-alive timeout; the hub probe's timeout",
    "1 s": "the grace an idle connection gets when the port closes (checked below)",
    "400s": "HTTP statuses",
    "50 MB": "Lambda's direct-upload limit; a text size in an example",
    "100 KB": "the size of the texts memory.py encodes",
    "250 MB": "Lambda's unzipped limit",
    "6 MB": "Lambda's synchronous response limit",
    "1,769 MB": "the memory at which Lambda gives one vCPU",
    "4x": "float32 bytes against their decimal text",
}


def _prose(text: str) -> str:
    """``text`` without generated tables, marked figures, code blocks and inline code."""
    text = re.sub(r"<!-- (\w+):start -->.*?<!-- \1:end -->", "", text, flags=re.S)
    text = re.sub(r"<!-- fig:[^>]*-->.*?<!-- /fig -->", "", text, flags=re.S)
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def test_no_measurement_is_typed_by_hand() -> None:
    """Every measured figure in the README and the docs is generated (a table or a marked
    figure) or included from a committed report: none is typed into the prose."""
    typed = [
        f"{page.relative_to(ROOT)}: {hit!r} in {line.strip()[:80]!r}"
        for page in PAGES
        for line in _prose(page.read_text(encoding="utf-8")).splitlines()
        for hit in MEASURE.findall(line)
        if hit.strip() not in NOT_MEASURED
    ]
    assert typed == [], "mark them as figures (benchmarks/figures.py):\n" + "\n".join(typed)


def test_the_cache_defaults_in_the_docs_are_the_codes() -> None:
    pytest.importorskip("starlette")
    from gist_onnx.cache import DEFAULT_BYTES, DEFAULT_ENTRIES
    from gist_onnx.serve.app import INLINE_BODY_BYTES, INLINE_VECTORS

    for page in ("serving.md", "guarantees.md"):
        text = (ROOT / "docs" / page).read_text(encoding="utf-8")
        inline = f"up to {INLINE_BODY_BYTES // 1024} KiB and answers of up to {INLINE_VECTORS} "
        assert inline in " ".join(text.split()), page

    for page in ("serving.md", "library.md"):
        text = (ROOT / "docs" / page).read_text(encoding="utf-8")
        assert f"{DEFAULT_ENTRIES:,}" in text and f"{DEFAULT_BYTES // 2**20} MiB" in text, page


def test_the_drain_grace_in_the_docs_is_the_codes() -> None:
    pytest.importorskip("uvicorn")
    from gist_onnx.serve.protocol import IDLE_GRACE_S

    said = {
        "serving.md": f"stays open for {IDLE_GRACE_S:g} s more",
        "guarantees.md": f"stays open for {IDLE_GRACE_S:g} s so",
    }
    for page, words in said.items():
        text = " ".join((ROOT / "docs" / page).read_text(encoding="utf-8").split())
        assert words in text, page


def test_the_serving_limits_table_is_the_codes_defaults() -> None:
    from gist_onnx.cli import build_parser

    serve = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices["serve"]
    defaults = {o: a.default for a in serve._actions for o in a.option_strings}
    text = (ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| [^|]*\(`(--[a-z-]+)`[^|]*\| ([^|]+) \|", text, flags=re.M)
    assert len(rows) >= 8
    units = {"MiB": 1024 * 1024, "KiB": 1024, "s": 1}
    for option, shown in rows:
        if shown.strip() == "none":
            assert defaults[option] is None, f"serving.md: {option} none != {defaults[option]}"
            continue
        number, _, unit = shown.strip().partition(" ")
        value = float(number.replace(",", "")) * units.get(unit, 1)
        assert value == defaults[option], f"serving.md: {option} {shown} != {defaults[option]}"


def test_the_readme_fits_two_screens() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


def test_the_readmes_links_point_at_files_that_exist() -> None:
    """The docs site checks its own links (strict); the README is read on the forge, so its
    relative links are checked here."""
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert local, "the README links into docs/"
    assert [t for t in local if not (ROOT / t).exists()] == []
