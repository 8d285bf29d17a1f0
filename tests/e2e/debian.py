"""Debian packages an e2e test needs (a browser, PDF tools): installed when the tests run as
root with apt-get (CI's machine), else the test is skipped with the command that would
install them."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def install_or_skip(packages: tuple[str, ...], why: str) -> None:
    """apt-get install `packages`; pytest.skip("<why>: apt-get install ...") if it cannot."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"{why}: apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env,
                   timeout=1200)
