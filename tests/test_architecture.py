"""Dependencies flow one way: pages -> ui -> quant_core's public surface; the engine never imports streamlit.

Inside quant_core, serving/ and store/ sit on top: the engine (the package's top level),
inputs/ and results/ never import them.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _imported_names(path: Path, *, type_checking: bool = True) -> set[str]:
    """Every dotted name a file imports, anywhere in it: `import a.b` gives a.b; `from a import b` gives a and a.b.

    Without `type_checking`, what an `if TYPE_CHECKING:` block imports is left out: it never runs.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    if not type_checking:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                node.body = [ast.Pass()]
    package = ".".join(path.relative_to(REPO).parent.parts)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
    return names


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# The command line is a front end like ui/: its `compare` and `tune` score whole datasets through serving/ executors.
FRONT_ENDS = {REPO / "quant_core" / "cli.py"}


def test_the_engine_inputs_and_results_never_import_serving_or_store():
    """No arrow back up: worker processes, the pool, jobs and the publication store sit on the engine, not under it."""
    core = REPO / "quant_core"
    files = [p for p in sorted(core.glob("*.py")) if p not in FRONT_ENDS]
    files += sorted((core / "inputs").rglob("*.py")) + sorted((core / "results").rglob("*.py"))
    assert len(files) > 25
    upward = [(str(path.relative_to(REPO)), name) for path in files for name in sorted(_imported_names(path))
              if _within(name, "quant_core.serving") or _within(name, "quant_core.store")]
    assert upward == []


def test_ui_and_pages_import_only_the_public_surface_of_quant_core():
    """No module or package whose name starts with `_` (quant_core._serde, quant_core._quiet) outside quant_core."""
    files = sorted((REPO / "ui").rglob("*.py")) + sorted((REPO / "pages").rglob("*.py")) + [REPO / "streamlit_app.py"]
    assert len(files) > 20
    private = [(str(path.relative_to(REPO)), name) for path in files for name in sorted(_imported_names(path))
               if _within(name, "quant_core") and any(part.startswith("_") for part in name.split("."))]
    assert private == []


def test_quant_core_never_imports_streamlit_or_the_app():
    files = sorted((REPO / "quant_core").rglob("*.py"))
    assert len(files) > 10
    for path in files:
        assert not _imports(path) & {"streamlit", "ui", "pages", "plotly"}, path


def test_pages_do_not_import_tensorflow():
    for path in sorted((REPO / "pages").rglob("*.py")) + sorted((REPO / "ui").rglob("*.py")):
        assert not _imports(path) & {"tensorflow", "keras"}, path


def test_importing_the_engine_does_not_import_tensorflow():
    import subprocess
    import sys

    code = "import sys, quant_core, quant_core.cli; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_web_server_never_imports_tensorflow():
    """The sample journey runs every engine call in worker processes; the server stays light."""
    import subprocess
    import sys

    code = (
        "import os, sys, tempfile\n"
        "os.environ['QUANT_CACHE_DIR'] = tempfile.mkdtemp()\n"
        "from streamlit.testing.v1 import AppTest\n"
        "at = AppTest.from_file('streamlit_app.py', default_timeout=600)\n"
        "at.run()\n"
        "next(b for b in at.button if b.label == 'Run the full comparison').click().run()\n"
        "assert not at.exception and at.title[0].value == 'Compare', [e.value for e in at.exception]\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules, len(at.table[0].value))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False", "7"]


PRODUCT = ("quant_core", "ui", "pages")  # and streamlit_app.py; tests/ and bench/ are not the product
LONGEST_FUNCTION = 60


def _product_files() -> list[Path]:
    files = [path for package in PRODUCT for path in sorted((REPO / package).rglob("*.py"))]
    return [*files, REPO / "streamlit_app.py"]


def _function_lengths(path: Path) -> list[tuple[str, int]]:
    """(qualified name, lines) of every function and method in a file, nested ones included."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                assert child.end_lineno is not None
                found.append((f"{prefix}{child.name}", child.end_lineno - first + 1))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(), filename=str(path)), "")
    return found


def test_function_lengths_count_decorators_signature_docstring_and_body(tmp_path):
    """The measure itself: decorator to last line; a nested function and a method are measured on their own too."""
    path = tmp_path / "probe.py"
    path.write_text('@cache\ndef outer(\n    x):\n    """Doc."""\n\n    def inner():\n        return 1\n'
                    '    return x\n\n\nclass C:\n    def method(self):\n        pass\n')
    assert _function_lengths(path) == [("outer", 8), ("outer.inner", 2), ("C.method", 2)]


def test_no_product_function_is_longer_than_60_lines():
    """Every function and method of the product (quant_core/, ui/, pages/, streamlit_app.py) fits in 60 lines.

    A function's length is counted from its first decorator (else its `def` line) to the last
    line of its body, inclusive: signature, docstring, comments and blank lines inside all count.
    A nested function counts inside its enclosing function and is also measured on its own.
    """
    files = _product_files()
    assert len(files) > 60
    long = [(str(path.relative_to(REPO)), name, lines) for path in files for name, lines in _function_lengths(path)
            if lines > LONGEST_FUNCTION]
    assert long == []


def _circle(graph: dict[str, set[str]]) -> list[str]:
    """One circle of the graph as the path that walks it (first module repeated at the end), or [] when it has none."""
    done: set[str] = set()
    path: list[str] = []

    def walk(node: str) -> list[str]:
        if node in path:
            return [*path[path.index(node):], node]
        if node in done:
            return []
        path.append(node)
        for nxt in sorted(graph[node]):
            found = walk(nxt)
            if found:
                return found
        path.pop()
        done.add(node)
        return []

    for start in sorted(graph):
        found = walk(start)
        if found:
            return found
    return []


def test_the_circle_finder_finds_a_circle_and_only_a_circle():
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_ui_has_no_import_circle_not_even_through_imports_inside_functions():
    """An import moved into a function only hides a circle: each ui/ module's imports, wherever they are, form none."""
    modules = {f"ui.{p.stem}": p for p in sorted((REPO / "ui").glob("*.py")) if p.stem != "__init__"}
    assert len(modules) > 15
    graph = {name: {m for m in _imported_names(path, type_checking=False) if m in modules and m != name}
             for name, path in modules.items()}
    assert sum(len(targets) for targets in graph.values()) > 20  # the walk sees `from ui import a, b` as edges
    assert _circle(graph) == []
