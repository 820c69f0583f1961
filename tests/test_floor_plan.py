"""The floor plan (docs/architecture.md): layers only import downward, the core never imports
``r1zero.plugins``, no two files import each other (directly or round a longer circle), and an
import inside a function is of a heavy or optional library (or of an r1zero module that imports
one at its top) or says why in a comment.

The scan reads the source with ``ast`` as installed (``core/`` is ``r1zero``, ``plugins/`` is
``r1zero.plugins``); it imports nothing."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# lowest first; a module may import its own layer and those below
LAYERS = [("host",), ("config",), ("data", "scoring", "algo"), ("engines",), ("evaluate",),
          ("trainer",), ("cli", "demo"), ("<api>",), ("plugins",)]
LAYER_OF = {folder: i for i, names in enumerate(LAYERS) for folder in names}
HEAVY = ("torch", "transformers", "vllm", "megatron", "ray", "safetensors", "datasets",
         "pyarrow", "matplotlib", "tensorboard", "wandb", "sympy", "math_verify", "latex2sympy2",
         "tokenizers", "numpy", "yaml", "tqdm", "psutil", "torch_npu", "mindspeed", "vllm_ascend",
         "importlib.metadata", "trl", "accelerate", "pandas")


def modules() -> dict[str, Path]:
    out = {}
    for base, prefix in ((ROOT / "core", "r1zero"), (ROOT / "plugins", "r1zero.plugins")):
        for f in base.rglob("*.py"):
            parts = list(f.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = f
    return out


def folder(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "<api>"
    if parts[1:2] == ["plugins"]:
        return "plugins"
    return parts[1] if len(parts) > 2 or _is_package(module) else "<api>"


def _is_package(module: str) -> bool:
    return (ROOT / "core" / Path(*module.split(".")[1:]) / "__init__.py").is_file()


def imports(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported r1zero module, line, inside a function) for each import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    out = []

    def visit(node: ast.AST, in_fn: bool) -> None:
        for child in ast.iter_child_nodes(node):
            fn = in_fn or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, in_fn) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for a in child.names:
                    sub = f"{child.module}.{a.name}"
                    out.append((sub if sub in known else child.module, child.lineno, in_fn))
            visit(child, fn)

    visit(tree, False)
    return [(m, line, fn) for m, line, fn in out if m.split(".")[0] == "r1zero" and m != "r1zero"]


def scan():
    known = modules()
    arrows = {m: imports(m, p, known) for m, p in known.items()}
    return known, arrows


def test_no_import_climbs_a_layer_and_the_core_never_imports_plugins():
    known, arrows = scan()
    bad = []
    for mod, deps in arrows.items():
        src = folder(mod)
        for dep, line, _ in deps:
            dst = folder(dep)
            if dst == "plugins" and src != "plugins":
                bad.append(f"{known[mod].relative_to(ROOT)}:{line} imports {dep} (a plugin)")
            elif LAYER_OF[dst] > LAYER_OF[src]:
                bad.append(f"{known[mod].relative_to(ROOT)}:{line} ({src}) imports {dep} ({dst})")
    assert not bad, "\n".join(bad)


def test_no_circle_between_files():
    known, arrows = scan()
    graph = {m: sorted({d for d, _, _ in deps if d in known and d != m}) for m, deps in arrows.items()}
    # a package's __init__ re-exporting its own submodules is not a circle of files
    for m in graph:
        graph[m] = [d for d in graph[m] if not (m.startswith(d + ".") and _is_package(d))]
    state: dict[str, int] = {}
    circles = []

    def walk(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                circles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                walk(d, stack + [d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m, [m])
    assert not circles, "\n".join(circles)


def heavy_modules(known: dict[str, Path]) -> set[str]:
    """r1zero modules whose import (at file top, transitively) pulls a heavy library."""
    top: dict[str, set[str]] = {}
    direct = set()
    for mod, path in known.items():
        tree = ast.parse(path.read_text())
        names = set()
        for node in tree.body:
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
        if any(n == h or n.startswith(h + ".") for n in names for h in HEAVY):
            direct.add(mod)
        top[mod] = {n for n in names if n in known}
    heavy, changed = set(direct), True
    while changed:
        changed = False
        for mod, deps in top.items():
            if mod not in heavy and deps & heavy:
                heavy.add(mod)
                changed = True
    return heavy


def test_imports_inside_functions_are_heavy_optional_or_explained():
    known, _ = scan()
    heavy = heavy_modules(known)
    bad = []
    for mod, path in known.items():
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    name = node.module
                elif isinstance(node, ast.Import):
                    name = node.names[0].name
                else:
                    continue
                names = [name] + [f"{name}.{a.name}" for a in node.names]
                if name.split(".")[0] != "r1zero" or any(n in heavy for n in names) \
                        or "#" in lines[node.lineno - 1] or "#" in lines[node.lineno - 2]:
                    continue
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name} inside "
                           f"{fn.name}() with no comment saying why")
    assert not bad, f"{len(bad)} in-function imports of r1zero modules:\n" + "\n".join(bad)
