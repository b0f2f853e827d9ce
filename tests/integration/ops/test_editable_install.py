"""The README's install makes the runtime visible to a type checker in a user's project."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[3]
BANK = ROOT / "docs" / "examples" / "bank" / "bank"


def readme_install_options() -> list[str]:
    """The options of the quick start's `pip install -e`, after the requirement."""
    match = re.search(
        r"pip install -e '\.\[embedded\]'((?: --[\w-]+ \S+)*) &&", (ROOT / "README.md").read_text()
    )
    assert match, "the README's quick start installs with pip install -e"
    return match.group(1).split()


def test_mypy_strict_finds_the_runtime_installed_as_the_readme_says(tmp_path: Path) -> None:
    """A user package type-checks with mypy --strict against an editable install made with the
    README's options (the default editable hook is invisible to mypy)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # --no-deps: only the runtime's own files matter to the check, not its dependencies again
    install = subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "-q",
            "--no-deps",
            "-e",
            str(ROOT),
            *readme_install_options(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    project = tmp_path / "project"
    shutil.copytree(BANK, project / "bank")
    mypy = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--python-executable",
            str(venv / "bin" / "python"),
            "bank",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert mypy.returncode == 0, mypy.stdout
