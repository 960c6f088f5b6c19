"""The import graph of harness/: one subpackage per pipeline stage, imports only downward.

Every module is parsed with ``ast`` (no import is executed), counting every import: top-level,
function-local and ``if TYPE_CHECKING:`` ones alike, since a type-only import still ties two modules
together. The rules:

- no import cycle between modules;
- a module imports only from its own stage or the stages below it (``STAGES``, bottom first);
- no module uses a private name (leading underscore) of another module: ``from harness.x import _y``,
  ``module._y`` on an imported harness module, or ``obj._y`` / ``getattr(obj, "_y")`` /
  ``obj.__dict__["_y"]`` on an object annotated with a class of another harness module;
- every subpackage is a stage of ``STAGES``: a new stage must be placed in the order.

``harness/__init__.py`` (the version) sits outside the order: anything may import it and it imports
nothing. The server programs (``servers/`` at the top of the repository) run as scripts with no
harness import. The wheel's package list in pyproject.toml names every stage.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "harness"

# Bottom first: a module may import from its own stage and the ones before it.
STAGES = [
    "core",  # errors, formatting, paths, the result row
    "models",  # the built-in models, tool-call dialects, token counting, training
    "scenario",  # scenario files, request planning, context sizes, warm-up
    "server",  # server specs and processes
    "capture",  # SSE, HTTP exchange, cache-file accounting
    "checks",  # conformance and tool-call checks
    "run",  # config and the run itself
    "record",  # the recording proxy: observed exchanges become rows through the run's request path
    "clients",  # captured answers replayed into real client libraries
    "agent",  # the real agent (Claude Code) as the client, through the harness's proxy
    "analysis",  # rows -> summary frames
    "presentation",  # tables, plots, report, README table
    "verdicts",  # gate and claims
    "cli",  # command line and pytest plugin
]
OUTSIDE = {"data"}  # package data: not modules of the harness


# --- the graph ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: str
    line: int
    how: str  # "top-level", "function-local", "TYPE_CHECKING"

    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class Graph:
    package: str
    root: Path
    modules: dict[str, Path] = field(repr=False)
    edges: list[Edge] = field(default_factory=list, repr=False)
    private_uses: list[str] = field(default_factory=list, repr=False)

    def rel(self, module: str) -> str:
        return self.modules[module].relative_to(self.root.parent).as_posix()


def module_name(package_dir: Path, path: Path) -> str:
    parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stage_of(package: str, module: str) -> str | None:
    """The stage a module belongs to (its first sub-package), None for the root package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == package else None


def collect_modules(package_dir: Path) -> dict[str, Path]:
    return {
        module_name(package_dir, path): path
        for path in sorted(package_dir.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not _is_dunder(name)


class _ModuleScanner(ast.NodeVisitor):
    """Imports of one module, and its uses of other modules' private names."""

    def __init__(self, graph: Graph, module: str, is_package: bool) -> None:
        self.graph = graph
        self.module = module
        self.path = graph.rel(module)
        self.package_of_module = module if is_package else module.rpartition(".")[0]
        self.in_function = 0
        self.in_type_checking = 0
        # Names bound by imports: name -> ("module", M) or ("symbol", M) for a name defined in M.
        self.bindings: dict[str, tuple[str, str]] = {}
        # Per function scope: variable -> module of its annotated class (None: shadowed, unknown).
        self.scopes: list[dict[str, str | None]] = []
        # Per class: self.<attr> -> module of its class.
        self.class_attrs: list[dict[str, str]] = []

    # -- imports ---------------------------------------------------------------------------
    def _how(self) -> str:
        if self.in_type_checking:
            return "TYPE_CHECKING"
        return "function-local" if self.in_function else "top-level"

    def _ours(self, name: str) -> bool:
        return name == self.graph.package or name.startswith(self.graph.package + ".")

    def _edge(self, target: str, node: ast.AST) -> None:
        edge = Edge(self.module, target, self.path, node.lineno, self._how())
        if target != self.module and edge not in self.graph.edges:
            self.graph.edges.append(edge)

    def _private(self, node: ast.AST, text: str, owner: str) -> None:
        if owner != self.module:
            self.graph.private_uses.append(f"{self.path}:{node.lineno}: {text} (a private name of {owner})")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not self._ours(alias.name):
                continue
            self._edge(self._known(alias.name), node)
            for part in alias.name.split(".")[1:]:
                if _is_private(part):
                    self._private(node, f"import {alias.name}", alias.name.rpartition(".")[0])
            if alias.asname:
                self.bindings[alias.asname] = ("module", alias.name)
            else:
                self.bindings[alias.name.split(".")[0]] = ("module", alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package_of_module.split(".")
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if not self._ours(source):
            return
        for alias in node.names:
            full = f"{source}.{alias.name}"
            if full in self.graph.modules:
                self._edge(full, node)
                self.bindings[alias.asname or alias.name] = ("module", full)
            else:
                self._edge(self._known(source), node)
                self.bindings[alias.asname or alias.name] = ("symbol", source)
            if _is_private(alias.name):
                self._private(node, f"from {source} import {alias.name}", source)

    def _known(self, name: str) -> str:
        """The longest prefix of a dotted name that is a module of the package."""
        while name and name not in self.graph.modules:
            name = name.rpartition(".")[0]
        return name or self.graph.package

    # -- context ---------------------------------------------------------------------------
    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            self.in_type_checking += 1
            for child in node.body:
                self.visit(child)
            self.in_type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        attrs: dict[str, str] = {}
        for statement in node.body:  # class-body annotations (dataclasses, pydantic models)
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                owner = self._annotation_owner(statement.annotation)
                if owner:
                    attrs[statement.target.id] = owner
        self.class_attrs.append(attrs)
        # Methods first record what they assign to self.<attr>, then every body is checked.
        for statement in ast.walk(node):
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self._self_assignments(statement, attrs)
        self.generic_visit(node)
        self.class_attrs.pop()

    def _self_assignments(self, function: ast.FunctionDef | ast.AsyncFunctionDef, attrs: dict[str, str]) -> None:
        params = self._parameter_owners(function)
        for statement in ast.walk(function):
            if isinstance(statement, ast.AnnAssign):
                targets, owner = [statement.target], self._annotation_owner(statement.annotation)
            elif isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Name):
                targets, owner = statement.targets, params.get(statement.value.id)
            else:
                continue
            for target in targets:
                if (
                    owner
                    and isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    attrs[target.attr] = owner

    def _parameter_owners(self, function: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> dict[str, str | None]:
        args = function.args
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        return {arg.arg: self._annotation_owner(arg.annotation) for arg in every if arg is not None}

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        scope = self._parameter_owners(node)
        body = node.body if isinstance(node.body, list) else [node.body]
        for statement in body:
            for inner in ast.walk(statement):
                if isinstance(inner, ast.AnnAssign) and isinstance(inner.target, ast.Name):
                    scope[inner.target.id] = self._annotation_owner(inner.annotation)
        self.scopes.append(scope)
        self.in_function += 1
        self.generic_visit(node)
        self.in_function -= 1
        self.scopes.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _annotation_owner(self, annotation: ast.expr | None) -> str | None:
        """The module of the class an annotation names (``X``, ``X | None``, ``Optional[X]``,
        ``"X"``), when that class comes from a harness module."""
        if annotation is None:
            return None
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            try:
                annotation = ast.parse(annotation.value, mode="eval").body
            except SyntaxError:
                return None
        if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
            sides = [self._annotation_owner(annotation.left), self._annotation_owner(annotation.right)]
            owners = [owner for owner in sides if owner]
            return owners[0] if len(owners) == 1 else None
        if isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value).endswith("Optional"):
            return self._annotation_owner(annotation.slice)
        owner = self._resolve(annotation)
        return owner[1] if owner and owner[0] == "symbol" else None

    # -- private names ---------------------------------------------------------------------
    def _resolve(self, node: ast.expr) -> tuple[str, str] | None:
        """What an expression is: ("module", M), ("symbol", M) for a name of module M,
        ("instance", M) for an object of a class defined in M."""
        if isinstance(node, ast.Name):
            for scope in reversed(self.scopes):
                if node.id in scope:
                    return ("instance", scope[node.id]) if scope[node.id] else None
            return self.bindings.get(node.id)
        if isinstance(node, ast.Attribute):
            if (
                isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and self.class_attrs
                and node.attr in self.class_attrs[-1]
            ):
                return ("instance", self.class_attrs[-1][node.attr])
            base = self._resolve(node.value)
            if base and base[0] == "module":
                full = f"{base[1]}.{node.attr}"
                return ("module", full) if full in self.graph.modules else ("symbol", base[1])
        return None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _is_private(node.attr):
            base = self._resolve(node.value)
            if base and base[0] in ("module", "instance"):
                self._private(node, f"{ast.unparse(node)}", base[1])
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        # getattr(obj, "_x"), setattr(obj, "_x", v), hasattr(obj, "_x")
        if (
            isinstance(func, ast.Name)
            and func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
        ):
            self._private_key(node, node.args[0], node.args[1], ast.unparse(node))
        # obj.__dict__.get("_x") / .setdefault("_x", ...) / .pop("_x")
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Attribute)
            and func.value.attr == "__dict__"
            and node.args
        ):
            self._private_key(node, func.value.value, node.args[0], ast.unparse(node))
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        # obj.__dict__["_x"]
        if isinstance(node.value, ast.Attribute) and node.value.attr == "__dict__":
            self._private_key(node, node.value.value, node.slice, ast.unparse(node))
        self.generic_visit(node)

    def _private_key(self, node: ast.AST, obj: ast.expr, key: ast.expr, text: str) -> None:
        if isinstance(key, ast.Constant) and isinstance(key.value, str) and _is_private(key.value):
            base = self._resolve(obj)
            if base and base[0] in ("module", "instance"):
                self._private(node, text, base[1])


def scan(package_dir: Path) -> Graph:
    package_dir = Path(package_dir)
    modules = {
        name: path
        for name, path in collect_modules(package_dir).items()
        if stage_of(package_dir.name, name) not in OUTSIDE
    }
    graph = Graph(package_dir.name, package_dir, modules)
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        _ModuleScanner(graph, name, path.name == "__init__.py").visit(tree)
    return graph


# --- the rules ------------------------------------------------------------------------------------


def find_cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    targets: dict[str, set[str]] = {module: set() for module in graph.modules}
    for edge in graph.edges:
        if edge.target in targets:
            targets[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(targets[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(targets):
        if v not in index:
            visit(v)
    return cycles


def cycle_report(graph: Graph) -> list[str]:
    lines = []
    for group in find_cycles(graph):
        lines.append("import cycle between " + ", ".join(group) + ":")
        for edge in sorted(graph.edges, key=lambda e: (e.path, e.line)):
            if edge.source in group and edge.target in group:
                lines.append(f"  {edge.where()}: {edge.source} -> {edge.target} ({edge.how})")
    return lines


def layering_report(graph: Graph, stages: list[str]) -> list[str]:
    rank = {stage: i for i, stage in enumerate(stages)}
    order = " < ".join(stages)
    lines = []
    for edge in graph.edges:
        source, target = stage_of(graph.package, edge.source), stage_of(graph.package, edge.target)
        if source is None:
            lines.append(
                f"{edge.where()}: the root package imports {edge.target}; it must import nothing "
                "of the package (every module may import it)"
            )
        elif target in OUTSIDE:
            lines.append(
                f"{edge.where()}: {edge.source} imports {edge.target}: package data is read as "
                "files (harness.core.paths), never imported"
            )
        elif target is None or source not in rank or target not in rank:
            continue  # the root package (below everything); unplaced stages fail their own test
        elif rank[target] > rank[source]:
            lines.append(
                f"{edge.where()}: {edge.source} ({source}) imports {edge.target} ({target}), "
                f"a higher stage ({edge.how}); imports go down only: {order}"
            )
    return lines


# --- the tests on harness/ ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> Graph:
    return scan(PACKAGE_DIR)


def test_every_subpackage_is_a_placed_stage():
    found = sorted(
        p.name
        for p in PACKAGE_DIR.iterdir()
        if p.is_dir() and p.name not in OUTSIDE and not p.name.startswith((".", "__")) and any(p.rglob("*.py"))
    )
    unplaced = [name for name in found if name not in STAGES]
    assert not unplaced, (
        f"harness/{unplaced[0]}/ is not in STAGES of {__file__}: place every new stage "
        f"in the order (bottom first): {STAGES}"
    )
    missing = [stage for stage in STAGES if stage not in found]
    assert not missing, f"STAGES names stages that are not subpackages of harness/: {missing}"
    loose = sorted(p.name for p in PACKAGE_DIR.glob("*.py") if p.name != "__init__.py")
    assert not loose, f"modules outside any stage (move them into a stage subpackage): {loose}"


def test_no_import_cycles(graph):
    lines = cycle_report(graph)
    assert not lines, "\n".join(["Import cycles (TYPE_CHECKING and function-local imports count):", *lines])


def test_imports_go_only_down_the_stages(graph):
    lines = layering_report(graph, STAGES)
    assert not lines, "\n".join(["Imports against the stage order:", *lines])


def test_no_private_names_of_other_modules(graph):
    assert not graph.private_uses, "\n".join(
        [
            "Private names (leading underscore) used outside their module; make them public or move the code:",
            *graph.private_uses,
        ]
    )


def test_server_programs_import_nothing_of_the_package():
    """The programs in servers/ run standalone, with the command line of the program they stand
    for; they cannot rely on the harness being importable."""
    programs = sorted((PACKAGE_DIR.parent / "servers").rglob("*.py"))
    assert programs, "no server programs found under servers/"
    for path in programs:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n == "harness" or n.startswith("harness.") for n in names), (
                f"{path.relative_to(PACKAGE_DIR.parent)}:{node.lineno} imports the harness"
            )


def test_the_wheel_lists_every_stage():
    """pyproject.toml lists the wheel's packages (the mapped servers/ and scenarios/ folders cannot
    be found by a package search), so a new stage must be added there too or the wheel lacks it."""
    import tomllib

    listed = tomllib.loads((PACKAGE_DIR.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    on_disk = {f"harness.{p.parent.name}" for p in PACKAGE_DIR.glob("*/__init__.py")}
    assert on_disk <= set(listed), f"missing from [tool.setuptools] packages: {sorted(on_disk - set(listed))}"
    assert {"harness.data.servers", "harness.data.scenarios"} <= set(listed)


def test_the_scan_sees_the_whole_package(graph):
    """Guards the scanner itself: modules found, and known imports of each kind seen."""
    assert "harness.core.rows" in graph.modules and "harness.cli.main" in graph.modules
    assert not any(stage_of("harness", m) in OUTSIDE for m in graph.modules)
    hows = {edge.how for edge in graph.edges}
    assert {"top-level", "function-local"} <= hows


# --- the rules on a made-up package: each violation is caught -------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for directory in {p.parent for p in root.rglob("*.py")}:
        (directory / "__init__.py").touch()
    return root


def test_rules_catch_each_kind_of_violation(tmp_path):
    root = _package(
        tmp_path,
        {
            "low/a.py": "from __future__ import annotations\n"
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from pkg.low.b import B\n"
            "def f():\n    from pkg.high import c\n",
            "low/b.py": "from pkg.low import a\nclass B:\n    def _hidden(self): ...\n",
            "high/c.py": "from pkg.low.b import _helper\n"
            "import pkg.low.a as mod\n"
            "from pkg.low.b import B\n"
            "mod._state = 1\n"
            "class C:\n"
            "    def __init__(self, b: B) -> None:\n        self.b = b\n"
            "    def go(self):\n        return self.b._hidden()\n"
            "def run(b: B | None, n: int):\n"
            "    def inner():\n        return b._hidden(), getattr(b, '_x'), b.__dict__.get('_y')\n"
            "    return inner, n._ok\n",
        },
    )
    graph = scan(root)
    assert find_cycles(graph) == [["pkg.high.c", "pkg.low.a", "pkg.low.b"]]
    cycles = cycle_report(graph)
    assert any("(TYPE_CHECKING)" in line for line in cycles)
    assert any("(function-local)" in line for line in cycles)
    layering = layering_report(graph, ["low", "high"])
    assert len(layering) == 1 and "pkg.low.a (low) imports pkg.high.c (high)" in layering[0]
    assert len(layering_report(graph, ["high", "low"])) == 3  # the other way round: c's three imports
    private = "\n".join(graph.private_uses)
    for text in (
        "c.py:1: from pkg.low.b import _helper",
        "c.py:4: mod._state",
        "c.py:9: self.b._hidden",
        "c.py:12: b._hidden",
        "c.py:12: getattr(b, '_x')",
        "c.py:12: b.__dict__.get('_y')",
    ):
        assert text in private, (text, private)
    assert "n._ok" not in private  # not a harness object
    assert "high/c.py:" in private and len(graph.private_uses) == 6


def test_same_module_private_names_and_relative_imports(tmp_path):
    root = _package(
        tmp_path,
        {
            "low/a.py": "class A:\n    def _x(self): ...\ndef use(a: A):\n    return a._x()\n",
            "low/b.py": "from .a import A\nfrom . import a\n",
        },
    )
    graph = scan(root)
    assert graph.private_uses == []
    assert {(e.source, e.target) for e in graph.edges} == {("pkg.low.b", "pkg.low.a")}


def test_a_checkout_reads_the_top_level_servers_and_scenarios():
    """From the checkout (an editable install) the harness reads servers/ and scenarios/ at the top
    of the repository; tests/integration/test_packaging.py shows a wheel reads its copy of them."""
    from harness.core.paths import builtin_scenarios_dir, server_programs_dir

    root = PACKAGE_DIR.parent
    assert server_programs_dir() == root / "servers"
    assert builtin_scenarios_dir() == root / "scenarios"
    assert (server_programs_dir() / "legacy_server.py").is_file()
    assert (builtin_scenarios_dir() / "agent-session.yaml").is_file()
