"""``r1zero plugin new KIND NAME [--dir D]``: write a ready-to-install plugin package.

    r1zero plugin new rewards my_reward        # -> ./r1zero-my-reward/
    pip install -e r1zero-my-reward && python -m pytest -q r1zero-my-reward

KIND is one of templates | datasets | rewards | backends | algorithms. The package has a pyproject.toml
declaring one entry point in the ``r1zero`` group, a module registering one thing named NAME
through the kind's hook, a README and a test that passes once the package is installed.
The skeletons' code is in :mod:`r1zero.cli.scaffold_code`.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import attrs

from r1zero.host.errors import R1ZeroError
from r1zero.cli.scaffold_code import SKELETONS

NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")


class ScaffoldError(R1ZeroError):
    """A bad KIND or NAME, or a target folder that already has files."""


@attrs.frozen
class Names:
    """Every spelling of one plugin name, e.g. ``my_reward``:

    dist ``r1zero-my-reward`` (pip), module ``r1zero_my_reward`` (import), entry point and
    registered name ``my_reward``, class ``MyRewardScorer``.
    """
    kind: str
    name: str
    dist: str
    module: str
    cls: str

    @classmethod
    def of(cls, kind: str, name: str) -> "Names":
        if kind not in SKELETONS:
            raise ScaffoldError(f"unknown plugin kind {kind!r}; choose one of: "
                                f"{', '.join(SKELETONS)}")
        if not NAME_RE.fullmatch(name or ""):
            raise ScaffoldError(f"plugin name {name!r} must be lower case letters, digits and "
                                f"'_', starting with a letter (e.g. my_reward)")
        stem = name[len("r1zero_"):] if name.startswith("r1zero_") else name
        camel = "".join(p.capitalize() for p in stem.split("_") if p)
        return cls(kind, name, "r1zero-" + stem.replace("_", "-"), "r1zero_" + stem,
                   camel + SKELETONS[kind].cls_suffix)

    def fill(self, text: str) -> str:
        for key, value in (("__DIST__", self.dist), ("__MODULE__", self.module),
                           ("__CLASS__", self.cls), ("__NAME__", self.name),
                           ("__HOOK__", SKELETONS[self.kind].hook),
                           ("__NOUN__", SKELETONS[self.kind].noun),
                           ("__HOST_KIND__", SKELETONS[self.kind].host_kind)):
            text = text.replace(key, value)
        return text


def package_files(kind: str, name: str) -> dict[str, str]:
    """Relative path -> file text of the package for ``kind`` / ``name`` (nothing written)."""
    n = Names.of(kind, name)
    sk = SKELETONS[kind]
    return {
        "pyproject.toml": n.fill(PYPROJECT),
        "README.md": n.fill(README + sk.readme_use),
        f"{n.module}/__init__.py": n.fill(sk.module),
        f"tests/test_{n.module}.py": n.fill(sk.test),
        ".gitignore": "build/\n*.egg-info/\n__pycache__/\n",
    }


def new_plugin(kind: str, name: str, parent: str | Path = ".") -> Path:
    """Write the package into ``parent/<dist>/`` and return that folder.

    Refuses a target that exists and is not empty, so nothing of the user's is overwritten.
    """
    n = Names.of(kind, name)
    root = Path(parent).expanduser() / n.dist
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ScaffoldError(f"{root} already exists and is not empty; choose another --dir "
                            f"or remove it")
    files = package_files(kind, name)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def existing_owners(kind: str, name: str) -> list[str]:
    """Labels of installed plugins that already register ``name`` for ``kind``."""
    from r1zero.host.manager import PluginHost

    host_kind = SKELETONS[kind].host_kind
    return [r.plugin.label() for r in PluginHost().load().items(host_kind) if r.name == name]


def cmd_plugin_new(args: argparse.Namespace) -> int:
    n = Names.of(args.kind, args.name)
    root = new_plugin(args.kind, args.name, args.dir)
    print(f"wrote {root}/  ({SKELETONS[n.kind].noun} plugin {n.name!r}: distribution {n.dist}, "
          f"entry point `{n.name} = \"{n.module}\"` in group r1zero)")
    for rel in package_files(args.kind, args.name):
        print(f"  {root / rel}")
    taken = existing_owners(args.kind, args.name)
    if taken:
        print(f"note: {SKELETONS[args.kind].noun} {n.name!r} is already registered by "
              f"{', '.join(taken)}; once yours is installed, pick one with "
              f"`{SKELETONS[args.kind].pick_key.replace('__NAME__', n.name)}:` in the config")
    print("next:")
    print(f"  pip install -e {root}")
    print(f"  python -m pytest -q {root}")
    print(f"  r1zero plugins        # lists {n.name!r} from {n.dist} 0.1.0")
    print(f"  then in a recipe:     {SKELETONS[args.kind].config_line.replace('__NAME__', n.name)}")
    return 0


PYPROJECT = '''\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "__DIST__"
version = "0.1.0"
description = "r1zero __NOUN__ plugin: __NAME__"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["r1zero"]

# r1zero finds plugins through this entry-point group; the value is the module with the hooks.
[project.entry-points.r1zero]
__NAME__ = "__MODULE__"

[tool.setuptools]
packages = ["__MODULE__"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

README = '''\
# __DIST__

An r1zero __NOUN__ plugin. `__MODULE__/__init__.py` implements the hook `__HOOK__(register)`
and registers one __NOUN__ named `__NAME__`; `pyproject.toml` lists the module under the entry-point
group `r1zero`, which is how r1zero finds it once the package is installed.

```bash
pip install -e .                 # editable: edits take effect without reinstalling
python -m pytest -q              # the contract tests in tests/
r1zero plugins                   # shows __NAME__ [installed; __DIST__ 0.1.0]
```

If r1zero lists the plugin as FAILED, the message names the module and the exception.
To try the module without packaging, point `plugins.modules` in a recipe (or the environment
variable `R1ZERO_PLUGINS`) at `__MODULE__/__init__.py`. Guide: r1zero's docs/plugins.md.

'''
