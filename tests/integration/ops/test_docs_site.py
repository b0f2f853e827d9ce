"""The documentation site builds with no broken link or reference, and leaves no name out."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import runtime

ROOT = Path(__file__).parents[3]


def test_the_site_builds_strictly_and_documents_every_public_name(tmp_path: Path) -> None:
    """`mkdocs build --strict` passes (snippets found, references resolved), the Python API page
    has an entry for every name in runtime.__all__ and the CLI page a section per command."""
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert build.returncode == 0, build.stderr
    api = (site / "reference" / "python" / "index.html").read_text()
    documented = set(re.findall(r'id="runtime\.(\w+)"', api))
    assert set(runtime.__all__) - documented == set()
    cli = (site / "reference" / "cli" / "index.html").read_text()
    for command in ("cqrs-dev", "cqrs-worker", "cqrs-projector", "cqrs-processes", "cqrs-send"):
        assert f'id="{command}"' in cli
