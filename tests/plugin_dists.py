"""Build small installed distributions (a package + its ``.dist-info``) in a temp site dir.

This is the layout pip leaves in site-packages, so ``importlib.metadata`` and pluggy see a
real distribution; used for error paths (collisions, import failures) no real package should
ship. Happy paths use r1zero's own built-ins and the pip-installed example plugins.
"""

from __future__ import annotations

import sys
from pathlib import Path


def make_dist(site: Path, name: str, version: str, modules: dict[str, str],
              entry_points: dict[str, str]) -> Path:
    site.mkdir(parents=True, exist_ok=True)
    for mod, code in modules.items():
        (site / f"{mod}.py").write_text(code)
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    eps = "[r1zero]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(eps)
    return site


def activate(site: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(site))
    for mod in [m for m in sys.modules if m.startswith("r1z_test_")]:
        monkeypatch.delitem(sys.modules, mod)
