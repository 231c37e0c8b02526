"""Unit tier: every promise on the docs' Guarantees page names the tests that hold it, and every
test it names exists: the page cannot promise what nothing checks."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _section() -> str:
    return (ROOT / "docs" / "guarantees.md").read_text(encoding="utf-8")


def _defined_tests() -> set[str]:
    names = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                names.add(node.name)
    return names


def test_every_test_the_guarantees_name_exists() -> None:
    named = set(re.findall(r"`(test_\w+)`", _section()))
    assert len(named) >= 30
    assert sorted(named - _defined_tests()) == []


def test_every_guarantee_names_a_test() -> None:
    promises = [p for p in re.split(r"\n- ", _section())[1:]]
    assert len(promises) >= 15
    for promise in promises:
        assert re.search(r"`test_\w+`", promise), promise[:80]
