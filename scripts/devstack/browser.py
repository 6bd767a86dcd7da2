"""Chromium for the dashboard's browser test (``devstack test`` installs it when it may).

It is Debian's ``chromium`` package, about 400 MB installed with its libraries: said before it
is fetched, skipped with CLICKTRACK_SKIP_BROWSER_INSTALL=1. Where it cannot be installed, the
other checks still run and the browser test skips, saying why (under CI it fails)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from devstack.base import log

CHROMIUM = Path("/usr/bin/chromium")
SKIP_INSTALL_ENV = "CLICKTRACK_SKIP_BROWSER_INSTALL"
INSTALL_TIMEOUT_S = 900.0
SKIPPED = "the dashboard's browser test will be skipped (the other tests run)"


def install_refusal(
    environ: Mapping[str, str],
    *,
    chromium: Path = CHROMIUM,
    euid: Callable[[], int] = os.geteuid,
    apt: str | None = None,
    debian: bool | None = None,
) -> str | None:
    """Why Chromium is not to be installed here (None: install it)."""
    if chromium.exists():
        return None
    if environ.get(SKIP_INSTALL_ENV, "").strip().lower() in {"1", "true", "yes", "on"}:
        return f"{chromium} is missing and {SKIP_INSTALL_ENV} is set"
    debian = Path("/etc/debian_version").exists() if debian is None else debian
    if euid() != 0 or apt is None or not debian:
        return (
            f"{chromium} is missing and cannot be installed here (apt-get install chromium "
            "needs root on Debian or Ubuntu)"
        )
    return None


def ensure_chromium() -> None:
    """The dashboard's browser test drives Debian's Chromium (never a browser Playwright
    downloads). Install it when it is missing and we may: root, on Debian. Otherwise say so;
    the test then skips with the reason (and fails under CI)."""
    if CHROMIUM.exists():
        return
    apt = shutil.which("apt-get")
    refusal = install_refusal(os.environ, apt=apt)
    if refusal is not None or apt is None:
        log(f"{refusal}: {SKIPPED}")
        return
    log(
        f"{CHROMIUM} is missing: installing Debian's chromium package for the dashboard's "
        f"browser test, about 400 MB with its libraries ({SKIP_INSTALL_ENV}=1 skips this)"
    )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        [apt, "update", "-q"],
        [apt, "install", "-y", "-q", "--no-install-recommends", "chromium"],
    ):
        log(f"installing Chromium for the browser test: {shlex.join(command)}")
        try:
            code = subprocess.run(command, env=env, check=False, timeout=INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log(f"{shlex.join(command)} took over {INSTALL_TIMEOUT_S:.0f}s: {SKIPPED}")
            return
        if code.returncode != 0:
            log(f"{shlex.join(command)} failed: {SKIPPED}")
            return
