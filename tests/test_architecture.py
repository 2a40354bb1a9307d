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


def _imported_names(path: Path) -> set[str]:
    """Every dotted name a file imports, anywhere in it: `import a.b` gives a.b; `from a import b` gives a and a.b."""
    tree = ast.parse(path.read_text(), filename=str(path))
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
