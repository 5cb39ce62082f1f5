"""The house rules: no import circles, and each layer imports only what is below it.

Every import counts, at the top of a module or inside a function: moving an import into a
function hides a circle from Python, not from this test.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("controlplane", "provisioners", "policies")


def module_files(root: Path, packages=PACKAGES) -> dict[str, Path]:
    found = {}
    for top in packages:
        for path in (root / top).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports, wherever the import statement stands."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                targets.add(sub if sub in known else module)
    return {t for t in targets if t in known and t != name}


def graph(root: Path = ROOT, packages=PACKAGES) -> dict[str, set[str]]:
    files = module_files(root, packages)
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles():
    found = cycles(graph())
    assert not found, "import circles (each line is one circle's modules):\n" + "\n".join(
        " <-> ".join(c) for c in found)


def _offending(edges, source_prefix: str, forbidden: tuple[str, ...], allowed=()) -> list[str]:
    return sorted(f"{src} imports {dst}" for src, dsts in edges.items()
                  if src == source_prefix or src.startswith(source_prefix + ".")
                  for dst in dsts
                  if dst.startswith(forbidden) and not dst.startswith(allowed))


def test_policies_are_pure():
    """Policies are rules over plain data: no Flask app, no provisioner."""
    assert _offending(graph(), "policies", ("controlplane", "provisioners")) == []


def test_provisioners_know_nothing_of_the_control_plane():
    assert _offending(graph(), "provisioners", ("controlplane", "policies")) == []


def test_core_imports_no_domain():
    assert _offending(graph(), "controlplane.core", ("controlplane",),
                      allowed=("controlplane.core",)) == []


def test_product_never_imports_run_tooling():
    for path in module_files(ROOT).values():
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.split(".")[0] in ("devtools", "tests")], path


def test_a_circle_through_a_function_level_import_is_found(tmp_path):
    """The check itself: a circle hidden inside a function is still a circle."""
    pkg = tmp_path / "controlplane"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from controlplane import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    (pkg / "c.py").write_text("import controlplane.a\n")
    assert cycles(graph(tmp_path, ("controlplane",))) == [["controlplane.a", "controlplane.b"]]


def test_no_two_modules_share_a_name_with_another_meaning():
    """Only per-domain roles repeat by design (a domain's views, forms, jobs, commands, state
    machine), and a component's two sides (the control plane's mail platform and mailboxes
    drive the provisioners' ones)."""
    shared = {"__init__", "__main__", "views", "forms", "jobs", "cli", "kind", "states",
              "mailboxes", "platform"}
    by_leaf: dict[str, list[str]] = {}
    for module, path in module_files(ROOT).items():
        if path.name != "__init__.py":  # a kind's package and its provisioner's share a name
            by_leaf.setdefault(module.rsplit(".", 1)[-1], []).append(module)
    assert {leaf: mods for leaf, mods in by_leaf.items()
            if len(mods) > 1 and leaf not in shared} == {}


def test_imports_stand_at_the_top_of_modules():
    """An import inside a function is only for a heavy third-party module, said in a comment."""
    found = []
    for name, path in module_files(ROOT).items():
        source = path.read_text()
        tree = ast.parse(source)
        top = {id(node) for node in tree.body}
        lines = source.splitlines()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                if (module or "").split(".")[0] in PACKAGES or "#" not in lines[node.lineno - 1]:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {module}")
    assert found == []
