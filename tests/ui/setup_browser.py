"""Install what the browser tests need, only what is missing: Debian's Chromium and axe-core.

Run by ``make test`` before pytest (``python tests/ui/setup_browser.py``) and called again by the browser
fixtures, so a bare ``pytest`` on a fresh machine also installs them. Playwright's own browser download does not
work here, so the tests drive ``/usr/bin/chromium`` (``apt-get install chromium``, as root); axe-core comes from
npm into the git-ignored ``.cache/npm`` folder of the repository. Both steps are no-ops once installed. Every
failure raises :class:`SetupError` naming what is missing and how to install it by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
NPM_PREFIX = REPO / ".cache" / "npm"
AXE_JS = NPM_PREFIX / "node_modules" / "axe-core" / "axe.min.js"
AXE_SPEC = "axe-core@4"


class SetupError(RuntimeError):
    """A prerequisite of the browser tests is missing and could not be installed."""


def _run(cmd: list[str], timeout_s: float) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SetupError(f"`{' '.join(cmd)}` could not run ({exc})") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-800:]
        raise SetupError(f"`{' '.join(cmd)}` failed with exit code {done.returncode}:\n{tail}")


def ensure_chromium() -> Path:
    """``/usr/bin/chromium``, installed with apt-get (update, then install) if it is missing."""
    if CHROMIUM.exists():
        return CHROMIUM
    fix = "install it by hand as root: apt-get update && apt-get install -y chromium"
    if shutil.which("apt-get") is None:
        raise SetupError(f"{CHROMIUM} is missing and this machine has no apt-get; {fix} (or your system's package)")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise SetupError(f"{CHROMIUM} is missing and installing it needs root; {fix}")
    env_cmd = ["env", "DEBIAN_FRONTEND=noninteractive"]
    try:
        _run([*env_cmd, "apt-get", "update", "-q"], timeout_s=600)
        _run([*env_cmd, "apt-get", "install", "-y", "-q", "chromium"], timeout_s=1200)
    except SetupError as exc:
        raise SetupError(f"installing Chromium failed: {exc}\n{fix}") from None
    if not CHROMIUM.exists():
        raise SetupError(f"apt-get installed chromium but {CHROMIUM} is still missing; {fix}")
    return CHROMIUM


def ensure_axe() -> Path:
    """``axe.min.js`` of axe-core 4, installed from npm into ``.cache/npm`` if it is missing."""
    if AXE_JS.exists():
        return AXE_JS
    fix = f"install it by hand: npm install --prefix {NPM_PREFIX} {AXE_SPEC}"
    if shutil.which("npm") is None:
        raise SetupError(f"axe-core is missing ({AXE_JS}) and npm is not installed (apt-get install -y npm); {fix}")
    NPM_PREFIX.mkdir(parents=True, exist_ok=True)
    try:
        _run(["npm", "install", "--prefix", str(NPM_PREFIX), "--no-audit", "--no-fund", AXE_SPEC], timeout_s=600)
    except SetupError as exc:
        raise SetupError(f"installing axe-core failed: {exc}\n{fix}") from None
    if not AXE_JS.exists():
        raise SetupError(f"npm installed {AXE_SPEC} but {AXE_JS} is missing; {fix}")
    return AXE_JS


def ensure_playwright() -> None:
    """The Playwright Python package (the dev extra), whose wheel ships its own node driver."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise SetupError("the Playwright package is missing; install the dev extra: "
                         ".venv/bin/pip install -e '.[dev]' (or pip install 'playwright>=1.45')") from None


def main() -> int:
    """Install what is missing; exit code 1 with the reason when something cannot be installed."""
    try:
        ensure_playwright()
        print(f"chromium: {ensure_chromium()}")
        print(f"axe-core: {ensure_axe()}")
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
