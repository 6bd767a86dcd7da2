"""The architecture's import boundaries (docs/architecture.md, "Code map"), enforced.

Two kinds of check:

- **What a process loads.** A subprocess imports every module of a package and lists the
  ``app.*`` modules that got loaded: the truth, whatever the source looks like (a re-export
  in an ``__init__``, an import inside a function body run at import time).
- **Cycles.** The import graph read from the source (every ``import`` statement, at any depth,
  ``TYPE_CHECKING`` blocks included) must have no cycle between the packages of ``app/``, nor
  between modules (a cycle that works only by import order breaks when the order changes).

Each checker takes the package to look at, so the tests at the end show it catching a
made-up violation.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> packages it must never load
FORBIDDEN = {
    "app.edge": (
        "app.api",
        "app.money",
        "app.orders",
        "app.reports",
        "app.dashboard",
        "app.flusher",
    ),
    "app.flusher": ("app.api", "app.edge", "app.dashboard", "app.main"),
    "app.reports": ("app.flusher",),
    "app.api": ("app.flusher",),
    "app.dashboard": ("app.flusher",),
    "app.traffic": ("app.flusher",),
    # The outbox is written from orders and money: it must load nothing of theirs (a cycle).
    "app.postbacks": ("app.orders", "app.money", "app.api", "app.sender", "app.flusher"),
    "app.sender": ("app.api", "app.edge", "app.dashboard", "app.main", "app.orders", "app.money"),
    # Pure resolvers the flusher (and later the redirect's rules) call: no process's package.
    "app.dimensions": ("app.api", "app.edge", "app.flusher", "app.dashboard", "app.main"),
}


def modules_of(package: str, root: Path = ROOT) -> list[str]:
    """Every module of ``package`` (its ``__init__`` and ``__main__`` included), by name."""
    folder = root.joinpath(*package.split("."))
    found = []
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append(".".join(parts))
    return found


_LIST_LOADED = """
import importlib, json, sys
for name in sys.argv[2:]:
    importlib.import_module(name)
top = sys.argv[1]
print(json.dumps(sorted(m for m in sys.modules if m == top or m.startswith(top + "."))))
"""


def loaded_by(modules: Iterable[str], root: Path = ROOT, top: str = "app") -> set[str]:
    """The ``top.*`` modules a fresh interpreter has loaded after importing ``modules``."""
    done = subprocess.run(
        [sys.executable, "-c", _LIST_LOADED, top, *modules],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


def trespasses(package: str, forbidden: Iterable[str], root: Path = ROOT) -> dict[str, list[str]]:
    """Forbidden packages that importing ``package``'s modules loads (asked of a fresh
    interpreter) -> the chain of imports that loads each, from a module of ``package`` to
    the forbidden one (the shortest, read from the statements run at import time)."""
    modules = modules_of(package, root)
    top = package.split(".")[0]
    loaded = loaded_by(modules, root, top)
    hit = sorted(f for f in forbidden if any(_within(m, f) for m in loaded))
    if not hit:
        return {}
    graph = import_graph(top, root, at_import_only=True)
    return {f: _chain(graph, modules, f) for f in hit}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _chain(graph: dict[str, set[str]], starts: list[str], target: str) -> list[str]:
    """The shortest import chain from one of ``starts`` into ``target`` (breadth first)."""
    came_from: dict[str, str | None] = dict.fromkeys(starts)
    queue = deque(sorted(starts))
    while queue:
        module = queue.popleft()
        if _within(module, target):
            chain = [module]
            while (previous := came_from[chain[-1]]) is not None:
                chain.append(previous)
            return chain[::-1]
        for imported in sorted(graph.get(module, ())):
            if imported not in came_from:
                came_from[imported] = module
                queue.append(imported)
    return ["(no import statement leads there: an import by name at run time?)"]


def _import_statements(tree: ast.Module, *, at_import_only: bool) -> Iterator[ast.stmt]:
    """Every import statement of a module; with ``at_import_only``, not those in function
    bodies (they run when called, not when the module is imported)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if at_import_only and isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            stack.append(child)


def _imports(path: Path, module: str, known: set[str], *, at_import_only: bool) -> set[str]:
    """The modules of ``known`` that ``path`` (module ``module``) imports."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_statements(tree, at_import_only=at_import_only):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from a.b import c``: c is either a module a.b.c or a name of a.b.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            # importing a.b.c imports a and a.b first
            parts = name.split(".")
            for n in range(1, len(parts) + 1):
                candidate = ".".join(parts[:n])
                if candidate in known and candidate != module:
                    found.add(candidate)
    return found


def import_graph(
    top: str = "app", root: Path = ROOT, *, at_import_only: bool = False
) -> dict[str, set[str]]:
    """module -> the modules of ``top`` it imports (read from the source: every import
    statement, or with ``at_import_only`` those run when the module is imported)."""
    names = modules_of(top, root)
    known = set(names)
    graph = {}
    for name in names:
        folder = root.joinpath(*name.split("."))
        path = folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")
        graph[name] = _imports(path, name, known, at_import_only=at_import_only)
    return graph


def package_of(module: str, top: str = "app") -> str:
    """``app.edge.redirect`` -> ``app.edge``; a top-level module is its own package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def package_graph(graph: dict[str, set[str]], top: str = "app") -> dict[str, set[str]]:
    """The module graph folded into packages of ``top`` (edges inside a package dropped)."""
    folded: dict[str, set[str]] = {}
    for module, targets in graph.items():
        if module == top:
            continue
        source = package_of(module, top)
        folded.setdefault(source, set())
        for target in targets:
            if target != top and package_of(target, top) != source:
                folded[source].add(package_of(target, top))
    return folded


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one node (Tarjan's algorithm), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


# -- the rules on app/ -------------------------------------------------------------------------


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_loads_nothing_it_must_not(package: str) -> None:
    found = trespasses(package, FORBIDDEN[package])
    assert not found, f"importing {package} loads " + "; ".join(
        f"{bad}: {' -> '.join(chain)}" for bad, chain in sorted(found.items())
    )


def test_the_redirect_loads_the_link_rules_not_the_link_store() -> None:
    """The redirect needs the link code rule; the link cache reads Postgres through the
    mirror's read-through, never through the API's link store."""
    assert "app.links.store" not in loaded_by(["app.edge.redirect"])


# package -> the packages it may import besides app.settings and app.errors (the code map's
# last column; entry points are free)
ALLOWED = {
    "app.core": set(),
    "app.clicks": {"app.core"},
    "app.links": {"app.core"},
    "app.accounts": {"app.core"},
    "app.audit": {"app.core"},
    "app.traffic": {"app.core"},
    "app.dimensions": {"app.core"},
    "app.edge": {"app.core", "app.clicks", "app.links", "app.dimensions", "app.caps"},
    "app.flusher": {"app.core", "app.clicks", "app.traffic", "app.dimensions"},
    "app.orders": {"app.core", "app.clicks", "app.postbacks"},
    "app.money": {"app.core", "app.orders", "app.postbacks"},
    # Caps: their windows (pure, what the redirect loads), their store, and the order and
    # commission caps screening calls.
    "app.caps": {"app.core", "app.links", "app.orders", "app.money"},
    "app.postbacks": {"app.core"},
    "app.sender": {"app.core", "app.postbacks"},
    "app.reports": {"app.core", "app.traffic", "app.orders", "app.money", "app.accounts"},
    "app.api": {
        "app.core",
        "app.accounts",
        "app.audit",
        "app.links",
        "app.traffic",
        "app.orders",
        "app.money",
        "app.reports",
        "app.postbacks",
        "app.caps",
    },
    "app.dashboard": {
        "app.core",
        "app.accounts",
        "app.traffic",
        "app.reports",
        "app.api",
        "app.money",
        "app.links",
        "app.audit",
        "app.postbacks",  # the Postbacks page: endpoints, the delivery log, replays, tests
    },
}


def test_packages_import_only_what_the_code_map_allows() -> None:
    """Read from the source: the arrows of docs/architecture.md's code map, and no more."""
    graph = package_graph(import_graph())
    # The settings, the Redis URL rules they check (pure), and the exception tree.
    free = {"app.settings", "app.redis_urls", "app.errors"}
    extra = {
        package: sorted(graph.get(package, set()) - allowed - free)
        for package, allowed in ALLOWED.items()
    }
    assert {p: e for p, e in extra.items() if e} == {}
    entry_points = {
        "app.main",
        "app.serve",
        "app.cli",
        "app.cli_withdrawals",
        "app.cli_merchants",
        "app.cli_apikeys",
        "app.cli_accounts",
        "app.cli_audit",
        "app.cli_dimensions",
        "app.cli_postbacks",
        "app.cli_caps",
        "app.cli_orders",
    }
    assert set(graph) - set(ALLOWED) <= {*entry_points, *free}


def test_the_dashboard_calls_report_services_not_api_handlers() -> None:
    """Of the API, the dashboard may use the request's resources (``app.api.deps``) only."""
    graph = import_graph()
    used = {
        target
        for module, targets in graph.items()
        if module.startswith("app.dashboard")
        for target in targets
        if target.startswith("app.api")
    }
    assert used <= {"app.api", "app.api.deps"}


def test_no_import_cycle_between_packages() -> None:
    assert cycles(package_graph(import_graph())) == []


def test_no_import_cycle_between_modules() -> None:
    assert cycles(import_graph()) == []


def test_packages_are_the_concepts_of_the_code_map() -> None:
    """A new top-level package or module of app/ gets its line in docs/architecture.md."""
    code_map = (ROOT / "docs" / "architecture.md").read_text()
    for name in sorted(set(package_graph(import_graph()))):
        path = "app/" + name.removeprefix("app.").replace(".", "/")
        assert f"`{path}/`" in code_map or f"`{path}.py`" in code_map, path


# -- the checkers catch what they are for -------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_checkers_catch_a_forbidden_load_and_a_package_cycle(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "shop/__init__.py": "",
            "shop/edge/__init__.py": "",
            "shop/edge/fast.py": "def hot():\n    from shop.web import pages\n",
            "shop/edge/slow.py": "import shop.web.pages\n",
            "shop/web/__init__.py": "",
            "shop/web/pages.py": "from shop.edge import fast\n",
        },
    )
    # fast.py imports web only when called: loading it is fine; slow.py loads it at import.
    assert trespasses("shop.edge", ["shop.web"], tmp_path) == {
        "shop.web": ["shop.edge.slow", "shop.web"]
    }
    graph = import_graph("shop", tmp_path)
    assert cycles(package_graph(graph, "shop")) == [["shop.edge", "shop.web"]]
    assert cycles(graph) == [["shop.edge.fast", "shop.web.pages"]]


def test_checkers_catch_a_reexport_cycle_inside_a_package(tmp_path: Path) -> None:
    """The shape the flusher once had: __init__ re-exports loop, sink imports the package."""
    _write(
        tmp_path,
        {
            "shop/__init__.py": "",
            "shop/flusher/__init__.py": "from shop.flusher.loop import Flusher\n",
            "shop/flusher/loop.py": "from shop.flusher import sink\nclass Flusher: ...\n",
            "shop/flusher/sink.py": "from shop.flusher import rollups\n",
            "shop/flusher/rollups.py": "",
        },
    )
    assert cycles(import_graph("shop", tmp_path)) == [
        ["shop.flusher", "shop.flusher.loop", "shop.flusher.sink"]
    ]
