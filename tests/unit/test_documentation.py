"""The documentation's Python examples come from code the test suite runs, so they cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON_BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$')
SNIPPET_BASES = [ROOT / "docs" / "examples", ROOT]


def pages() -> list[Path]:
    return [p for p in sorted((ROOT / "docs").rglob("*.md")) if "examples" not in p.parts]


def test_every_python_block_of_the_site_is_included_from_tested_code() -> None:
    """A Python block on a page holds only snippet lines naming files under docs/examples/ (the
    tested example project), aggregates/ or projections/ (the tested example domain)."""
    blocks = 0
    for page in pages():
        for block in PYTHON_BLOCK.findall(page.read_text()):
            blocks += 1
            for line in filter(None, block.splitlines()):
                included = SNIPPET.match(line)
                assert included, f"{page.relative_to(ROOT)}: a Python line not from a file: {line}"
                path = included.group(1).split(":")[0]
                assert path.split("/")[0] in {"bank", "aggregates", "projections"}, path
    assert blocks >= 10


def test_the_readme_examples_are_lines_of_tested_files_in_order() -> None:
    """Each Python block of the README starts with a comment naming a tested file, and its lines
    appear in that file in the same order (an excerpt, never a paraphrase)."""
    blocks = PYTHON_BLOCK.findall((ROOT / "README.md").read_text())
    assert blocks
    for block in blocks:
        first, *lines = block.splitlines()
        source = ROOT / first.removeprefix("# ")
        assert source.is_file() and source.is_relative_to(ROOT / "docs" / "examples"), first
        remaining = source.read_text().splitlines()
        for line in filter(str.strip, lines):
            assert line in remaining, f"{first}: not in the file (or out of order): {line}"
            remaining = remaining[remaining.index(line) + 1 :]
