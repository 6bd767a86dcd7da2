"""Chromium for the dashboard's browser test (``devstack test`` installs it when it may)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from devstack.base import log

CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium() -> None:
    """The dashboard's browser test drives Debian's Chromium (never a browser Playwright
    downloads). Install it when it is missing and we may: root, on Debian. Otherwise say so;
    the test then skips with the reason (and fails under CI)."""
    if CHROMIUM.exists():
        return
    apt = shutil.which("apt-get")
    if os.geteuid() != 0 or apt is None or not Path("/etc/debian_version").exists():
        log(f"{CHROMIUM} is missing and cannot be installed here (needs root on Debian): "
            "the dashboard's browser test will be skipped")  # fmt: skip
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        [apt, "update", "-q"],
        [apt, "install", "-y", "-q", "--no-install-recommends", "chromium"],
    ):
        log(f"installing Chromium for the browser test: {shlex.join(command)}")
        if subprocess.run(command, env=env, check=False).returncode != 0:
            log(f"{shlex.join(command)} failed: the dashboard's browser test will be skipped")
            return
