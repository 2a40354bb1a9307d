"""Dependencies flow one way: pages -> ui -> quant_core; the engine never imports streamlit."""

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
