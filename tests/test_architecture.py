"""The shape of the code: no import cycles between edgecc's modules (function-level imports
included: they hide cycles, they do not remove them), no op-kind lists outside compiler/ops/,
no layout parsing outside its module, no host detection outside the driver's target module."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"edgecc": "compiler", "edgecc.passes": "passes", "edgecc.backends": "backends",
            "edgecc.kernels": "kernels"}


def _modules() -> dict[str, Path]:
    """edgecc module name -> file (packages as their __init__.py)."""
    mods = {}
    for pkg, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([pkg] + parts)
            # edgecc's own subpackages beat the folder mapping (edgecc.passes is passes/)
            if pkg == "edgecc" and parts and f"edgecc.{parts[0]}" in PACKAGES:
                continue
            mods[name] = path
    return mods


def _resolve(current: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".")
    base = base if is_pkg else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_pkg, node)
                for a in node.names:        # `from pkg import module` imports the module
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in mods else base)
            for t in targets:
                while t and t not in mods:      # `import a.b.c` of a function: its module
                    t = t.rpartition(".")[0]
                if t and t != name:
                    graph[name].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    import sys
    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def _sources(*folders):
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            yield path, path.read_text()


def test_no_layout_parsing_outside_its_module():
    """Layouts are Layout values (compiler/ops/layout.py): nobody else matches their text."""
    pattern = re.compile(r"NCHW\(\[|re\.(compile|match|fullmatch|search)\([^)]*NCHW")
    bad = [str(p.relative_to(ROOT)) for p, text in _sources("compiler", "passes", "backends",
                                                              "kernels")
           if pattern.search(text) and p.name != "layout.py"]
    assert not bad


def test_no_op_kind_lists_outside_the_op_definitions():
    """Groupings of op kinds are traits of their @opdef (edgecc.ops.has_trait / kinds_with).
    A tuple/list/set constant of op names outside compiler/ops/ would be a second home for
    such a fact (registration decorators and tables mapping a kind to its implementation
    name the kinds they implement: allowed)."""
    from edgecc.ops import OPS
    name = "|".join(sorted(OPS, key=len, reverse=True))
    kind = rf"\"(?:{name})\""
    listed = re.compile(rf"^_?[A-Z_]+ = (?:frozenset\(|set\(|tuple\()?[\[({{]\s*"
                        rf"{kind},\s*{kind},\s*{kind}", re.M)
    bad = [str(p.relative_to(ROOT)) for p, text in _sources("compiler", "passes", "backends",
                                                              "kernels")
           if "compiler/ops/" not in str(p) and listed.search(text)]
    assert not bad, f"op-kind lists in {bad}"


def test_host_is_read_only_by_the_target_module():
    """No pass, lowering or schedule reads the machine it runs on: host detection happens in
    compiler/target.py, called by the driver when --mcpu is not given."""
    pattern = re.compile(r"/proc/cpuinfo|platform\.machine\(|llvm_get_system_cpu|"
                         r"Target\.current\(")
    bad = [str(p.relative_to(ROOT)) for p, text in _sources("compiler", "passes", "backends",
                                                              "kernels")
           if pattern.search(text) and p.name != "target.py"]
    assert not bad, f"host or ambient target read in {bad}"


REPO_PATH = re.compile(r"\b(compiler|backends|passes|kernels|tests|bench)/\w|\w\.py\b")


def test_user_messages_name_no_repository_paths():
    """Messages and help a user sees say what to do with edgecc's commands, not which source
    file to read (an installed edgecc has no repository): no string but a docstring names one."""
    bad = []
    for path, text in _sources("compiler", "passes", "backends", "kernels"):
        tree = ast.parse(text)
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                        ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr)}
        bad += [f"{path.relative_to(ROOT)}:{n.lineno}: {n.value!r}" for n in ast.walk(tree)
                if isinstance(n, ast.Constant) and isinstance(n.value, str)
                and id(n) not in docstrings and REPO_PATH.search(n.value)]
    assert not bad, "\n".join(bad)
