"""The import graph, read from the source with `ast`: no cycles, and settings on top.

`config` composes each room's settings, so no module of a room below it (pg, dump, files, storage,
notify, and the small modules at the package's root) may import `config`, directly or through
another module — counting every import, deferred ones and `TYPE_CHECKING` ones included. And rooms
stack: no two rooms (the package's top-level folders and modules) import each other, even through a third.
"""

from __future__ import annotations

import ast
from pathlib import Path

import backup_svc

PACKAGE = Path(backup_svc.__file__).parent
# Above config: what loads the settings and runs things with them.
ABOVE_CONFIG = (
    "backup_svc.cli",
    "backup_svc.__main__",
    "backup_svc.demo",
    "backup_svc.commands",
    "backup_svc.web",
    "backup_svc.serving.server",
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports (anywhere in its body)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module that importing `start` loads: its imports, theirs, and the packages that hold them."""
    seen, todo = set(), [start]
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.add(v)
        parent = v.rpartition(".")[0]
        todo.extend(graph.get(v, ()))
        if parent:
            todo.append(parent)
    return seen


def _above_config(name: str) -> bool:
    return name == "backup_svc.config" or any(name == top or name.startswith(top + ".") for top in ABOVE_CONFIG)


def test_the_import_graph_has_no_cycle():
    assert _cycles(import_graph()) == []


def test_nothing_below_config_imports_it_even_indirectly():
    graph = import_graph()
    below = [name for name in graph if not _above_config(name)]
    assert len(below) > 50  # the rooms are there: the check below is about something
    wrong = {
        name: sorted(m for m in _reaches(graph, name) if _above_config(m))
        for name in below
        if "backup_svc.config" in _reaches(graph, name)
    }
    assert wrong == {}


def _room(name: str) -> str:
    """The room a module is in: `backup_svc.storage.dedup.reader` → `storage`, `backup_svc.config` → `config`."""
    return name.split(".")[1] if name.count(".") else name


def room_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Room → the rooms its modules import."""
    rooms: dict[str, set[str]] = {}
    for name, targets in graph.items():
        rooms.setdefault(_room(name), set()).update(_room(t) for t in targets if _room(t) != _room(name))
    return rooms


def test_no_two_rooms_import_each_other_even_through_a_third():
    """Rooms stack: storage never imports history or notify (runs/ ties them), files never imports what
    restores in parallel from above it (files/parallel is inside), serving is handed the web app by cli."""
    rooms = room_graph(import_graph())
    assert {"storage", "history", "notify", "runs", "files", "serving", "web"} <= rooms.keys()
    assert _cycles(rooms) == []


def test_the_checks_can_fail():
    """A cycle and an upward import written into a copy of the graph are all found."""
    graph = import_graph()
    graph["backup_svc.pg.command"] = graph["backup_svc.pg.command"] | {"backup_svc.pg.binaries"}
    assert _cycles(graph)
    graph["backup_svc.dump.pipeline"] = graph["backup_svc.dump.pipeline"] | {"backup_svc.config"}
    assert "backup_svc.config" in _reaches(graph, "backup_svc.dump.pipeline")
    graph = import_graph()  # no module cycle, but storage → history → storage between rooms
    graph["backup_svc.storage.take"] = graph["backup_svc.storage.take"] | {"backup_svc.history.retention"}
    assert _cycles(room_graph(graph))


FORBIDDEN_IN_UNIT = {
    "subprocess",
    "socket",
    "http.client",
    "urllib.request",
    "playwright",
    "psycopg",
    "boto3",
    "multiprocessing",
    "asyncio",
}


def test_unit_tests_start_no_process_and_open_no_connection():
    """tests/unit is the pure, fast group: tests that need a process, node, podman or the network live in
    tests/service, tests/browser or tests/image."""
    unit = Path(__file__).parent
    found = {}
    for path in sorted(unit.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_IN_UNIT):
                    found.setdefault(path.name, []).append(name)
    assert found == {}


def code_map_misses(readme: str) -> list[str]:
    """Modules (and folders) of the package that the README's code map does not name in their folder's row."""
    section = readme[readme.index("## Code map") :]
    section = section[: section.index("\n## ", 4)] if "\n## " in section[4:] else section
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `backup_svc/"):
            folder, _, text = line[len("| `backup_svc/") :].partition("/` |")
            rows[folder] = text
        elif line.startswith("| top level |"):
            rows[""] = line
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        folder = path.parent.relative_to(PACKAGE).as_posix()
        folder = "" if folder == "." else folder
        if path.stem == "__init__":
            if folder not in rows:
                missing.append(f"backup_svc/{folder}/")
            continue
        text = rows.get(folder, "")
        if f"`{path.stem}`" not in text and f"`{path.stem}:" not in text and f"`{path.name}`" not in text:
            missing.append(path.relative_to(PACKAGE.parent).as_posix())
    return missing


def test_the_readme_code_map_names_every_module_in_its_folders_row():
    """Issue 20: the code map says where things are, and is true — a module added without a word there fails."""
    from tests import REPO

    assert code_map_misses((REPO / "README.md").read_text()) == []


def test_the_code_map_check_can_fail():
    from tests import REPO

    readme = (REPO / "README.md").read_text().replace("(`stopping`)", "").replace("| `backup_svc/runs/` |", "| runs |")
    assert code_map_misses(readme) == [
        "backup_svc/runs/",
        "backup_svc/runs/scheduler.py",
        "backup_svc/storage/stopping.py",
    ]
