"""The gateway's /docs page in a real headless browser with no network: Swagger UI comes from the
gateway itself, under a content security policy, and renders every operation."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest

from ..support import system_tool
from .conftest import Stack

CHROMIUM = system_tool("chromium", "chromium-browser", package="chromium")
# Every host name fails to resolve except the gateway's address: a machine without internet.
NO_NETWORK = "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"


def rendered(url: str, profile: Path) -> str:
    """The DOM of ``url`` once its scripts have run, as headless Chromium sees it offline."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        *("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"),
        *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
        f"--user-data-dir={profile}",
        f"--host-resolver-rules={NO_NETWORK}",
        "--virtual-time-budget=20000",  # virtual: it runs ahead unless a load is pending
        "--dump-dom",
        url,
    ]
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: apt-get install -y chromium")
def test_docs_render_every_operation_without_internet(stack: Stack, tmp_path: Path) -> None:
    """/docs loads Swagger UI from the gateway alone, with a content security policy, and a
    browser without network renders one operation per command and two per query."""
    document = httpx.get(f"{stack.url}/openapi.json", timeout=15).json()
    dom = rendered(f"{stack.url}/docs", tmp_path / "profile")
    shown = re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom)
    expected = [path for path, ops in document["paths"].items() for _ in ops]
    assert "/commands/user/{id}/create" in shown
    assert sorted(shown) == sorted(expected)
    assert "Failed to load API definition" not in dom
    page = httpx.get(f"{stack.url}/docs", timeout=15)
    assert "'self'" in page.headers["content-security-policy"]
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text), "loads from elsewhere"
