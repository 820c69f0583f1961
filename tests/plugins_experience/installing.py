"""pip-installing plugin packages into the test environment, as a plugin author would.

``ensure_installed(paths)`` installs the example packages editable (``pip install -e``) unless
this exact checkout is already installed with the same version and entry points, so the tests
are idempotent and a rerun costs no pip time. ``install_to(paths, site)`` installs a package
(non-editable) into a private folder that a test puts on ``sys.path`` / ``PYTHONPATH``, so a
package living in a temp dir never lingers in the environment.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import site
import subprocess
import sys
import tomllib
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plugins"
# offline and quiet: no index, no dependency resolution, the installed setuptools as backend
PIP = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
       "--no-deps", "--no-build-isolation"]


def project(path: Path) -> dict:
    """The ``[project]`` table of a package's pyproject.toml."""
    return tomllib.loads((path / "pyproject.toml").read_text())["project"]


def _installed_from(path: Path) -> bool:
    meta = project(path)
    try:
        dist = md.distribution(meta["name"])
    except md.PackageNotFoundError:
        return False
    url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
    eps = {ep.name: ep.value for ep in dist.entry_points if ep.group == "r1zero"}
    return (url == path.resolve().as_uri() and dist.version == meta["version"]
            and eps == meta["entry-points"]["r1zero"])


def _run_pip(args: list[str]) -> None:
    proc = subprocess.run(PIP + args, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"pip install {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


def ensure_installed(paths: list[Path]) -> list[str]:
    """pip install -e the packages not installed from ``paths`` yet; returns those installed."""
    todo = [p for p in paths if not _installed_from(p)]
    if todo:
        _run_pip([arg for p in todo for arg in ("-e", str(p))])
        importlib.invalidate_caches()
        for p in todo:
            _activate(project(p)["name"])
        from r1zero.host.manager import reset_host

        reset_host()   # a host built earlier in this process has not seen the new entry points
    return [project(p)["name"] for p in todo]


def _activate(dist_name: str) -> None:
    """Run the .pth files a fresh editable install added (Python reads them only at start-up)."""
    dist = md.distribution(dist_name)
    for f in dist.files or ():
        if f.name.endswith(".pth"):
            site.addpackage(str(dist.locate_file("")), f.name, set())


def install_to(paths: list[Path], target: Path) -> Path:
    """pip install (not editable) into ``target``, a folder outside site-packages."""
    _run_pip(["--target", str(target), *map(str, paths)])
    return target
