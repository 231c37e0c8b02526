"""Docs tier: the README and the docs site cannot drift from the code.

Every python and shell block of README.md and docs/ runs against the stand-in export (or is
marked ``syntax`` / ``skip`` with its reason, see ``docs_blocks.py``), the site builds with
``mkdocs build --strict`` (a broken link or reference fails it), and the README's figures are
the ones ``benchmarks/headline.py`` generates from the committed results.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from docs_blocks import Block, as_json, blocks, syntax_error

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
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


def _workdir(tmp: Path, exported: Path, exports: bool) -> Path:
    if not exports:  # a page that runs the export makes its own folder
        (tmp / "gist-onnx-model").symlink_to(exported, target_is_directory=True)
    (tmp / "texts.txt").write_text("What is the capital of France?\nParis is in France.\n")
    (tmp / "docs.jsonl").write_text('{"body": "A first document."}\n{"body": "A second one."}\n')
    (tmp / "table.csv").write_text('id,text\n1,"A first row"\n2,"A second row"\n')
    return tmp


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIST_ONNX_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (env.get("PYTHONPATH"), str(ROOT / "tests")) if p
    )
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
    work = _workdir(tmp_path, exported, any("gist-onnx export" in b.code for b in todo))
    out = tmp_path / "output.txt"
    with out.open("w") as handle:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "docs_blocks.py")],
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


def test_the_readme_figures_are_the_generated_ones() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import headline
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    for page, start, end, table in (
        ("README.md", headline.START, headline.END, headline.table),
        ("docs/benchmarks.md", headline.DOCS_START, headline.DOCS_END, headline.stacks_table),
        ("docs/gpu.md", headline.GPU_START, headline.GPU_END, headline.gpu_table),
    ):
        text = (ROOT / page).read_text(encoding="utf-8")
        inside = text.split(start, 1)[1].split(end, 1)[0]
        assert inside.strip() == table().strip(), f"{page}: python benchmarks/headline.py --write"


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
