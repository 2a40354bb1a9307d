"""Settings from the environment: read in one module, typed, refused in one line, and all documented."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from quant_core import ArtifactCache
from quant_core.config import EXECUTORS, NAMES_READ, Config, config, markdown_table
from quant_core.errors import InputError
from quant_core.serving.executors import ExecutorKind
from quant_core.serving.pool import WarmPool
from quant_core.serving.worker import Limits

SETTINGS_MD = REPO / "docs" / "settings.md"
_ENV_NAME = re.compile(r"\b(?:QW|QUANT)_[A-Z0-9_]*[A-Z0-9]\b")


def test_an_empty_environment_gives_the_defaults():
    defaults = Config.from_env({})
    assert defaults.workers == 2 and defaults.job_timeout_s == 1800 and defaults.job_memory_mb == 6144
    assert defaults.spare_worker is True and defaults.job_modules == () and defaults.executor == "local"
    assert defaults.datasets_dir is None and defaults.ray_cpus is None and defaults.database_url is None
    assert defaults.cache_dir == Path.home() / ".cache" / "quant-workbench"
    assert Config.from_env(dict.fromkeys(NAMES_READ, "")) == defaults  # empty means unset


def test_values_are_parsed_into_their_types():
    settings = Config.from_env({"QW_WORKERS": "4", "QW_SPARE_WORKER": "0", "QW_PREPARE": "off",
                                "QW_JOB_MODULES": "tests.a, tests.b,", "QW_RAY_CPUS": "3", "QW_EXECUTOR": "ray",
                                "QUANT_CACHE_DIR": "/srv/cache", "QW_SESSION_GRACE_S": "0",
                                "QW_WORKER_KEEP_MB": "512.5", "QW_DATABASE_URL": "postgresql+psycopg://u@h/db"})
    assert settings.workers == 4 and settings.ray_cpus == 3 and settings.worker_keep_mb == 512.5
    assert settings.spare_worker is False and settings.prepare is False
    assert settings.job_modules == ("tests.a", "tests.b")
    assert settings.executor == "ray" and settings.cache_dir == Path("/srv/cache") and settings.session_grace_s == 0
    assert settings.database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize("name, value, expected", [
    ("QW_WORKERS", "x", "a positive integer"),
    ("QW_WORKERS", "0", "a positive integer"),
    ("QW_WARM_WORKERS", "-1", "an integer, 0 or more"),
    ("QW_JOB_TIMEOUT_S", "-5", "a number of seconds, 0 or more"),
    ("QW_WORKER_IDLE_S", "nan", "a number of seconds, 0 or more"),
    ("QW_PUBLISH_MAX_MB", "2 GB", "a number, 0 or more"),
    ("QW_SPARE_WORKER", "maybe", "0 or 1"),
    ("QW_EXECUTOR", "spark", "local or ray"),
    ("QW_WORKER_NICE", "25", "an integer from 0 to 19"),
    ("QUANT_CACHE_MAX_MB", "1.5", "an integer, 0 or more"),
])
def test_a_bad_value_is_one_line_naming_the_variable(name, value, expected):
    with pytest.raises(InputError) as caught:
        Config.from_env({name: value})
    assert str(caught.value) == f"{name}: expected {expected}, got {value!r}"


@pytest.mark.parametrize("old, new, field, value, parsed", [
    ("QW_WARM_ENGINES", "QW_WARM_WORKERS", "warm_workers", "5", 5),
    ("QW_ENGINE_IDLE_S", "QW_WORKER_IDLE_S", "worker_idle_s", "12.5", 12.5),
    ("QW_ENGINE_KEEP_MB", "QW_WORKER_KEEP_MB", "worker_keep_mb", "100", 100.0),
    ("QW_SPARE_ENGINE", "QW_SPARE_WORKER", "spare_worker", "0", False),
    ("QW_ENGINE_WAIT_S", "QW_WORKER_WAIT_S", "worker_wait_s", "3", 3.0),
    ("QW_ENGINE_WORKBENCHES", "QW_WORKER_WORKBENCHES", "worker_workbenches", "7", 7),
])
def test_a_renamed_variable_is_still_read_by_its_old_name_and_the_new_name_wins(old, new, field, value, parsed):
    default = getattr(Config.from_env({}), field)
    assert parsed != default
    assert getattr(Config.from_env({old: value}), field) == parsed  # an old deployment keeps working
    assert getattr(Config.from_env({old: value, new: ""}), field) == parsed  # empty is unset: the old name is read
    assert getattr(Config.from_env({old: value, new: str(default)}), field) == default  # the new name wins


def test_a_bad_value_under_an_old_name_is_refused_naming_the_old_name():
    with pytest.raises(InputError) as caught:
        Config.from_env({"QW_WARM_ENGINES": "many"})
    assert str(caught.value) == "QW_WARM_ENGINES: expected an integer, 0 or more, got 'many'"
    assert Config.from_env({"QW_WARM_ENGINES": "many", "QW_WARM_WORKERS": "3"}).warm_workers == 3  # not even read


def test_the_process_config_follows_an_old_name_too(monkeypatch):
    monkeypatch.delenv("QW_SPARE_WORKER", raising=False)
    monkeypatch.setenv("QW_SPARE_ENGINE", "0")
    assert config().spare_worker is False
    monkeypatch.setenv("QW_SPARE_ENGINE", "1")
    assert config().spare_worker is True


def test_the_executor_choices_are_the_executors():
    assert tuple(kind.value for kind in ExecutorKind) == EXECUTORS


def test_the_process_config_follows_the_environment_and_is_parsed_once_per_change(monkeypatch):
    monkeypatch.setenv("QW_ABANDON_S", "5")
    first = config()
    assert first.abandon_s == 5 and config() is first  # unchanged environment: the same parsed Config
    monkeypatch.setenv("QW_ABANDON_S", "7")
    assert config().abandon_s == 7
    monkeypatch.delenv("QW_ABANDON_S")
    assert config().abandon_s == 30


def test_the_product_reads_settings_set_after_it_was_imported(monkeypatch, tmp_path):
    monkeypatch.setenv("QUANT_CACHE_MAX_MB", "3")
    monkeypatch.setenv("QUANT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("QW_WARM_WORKERS", "5")
    monkeypatch.setenv("QW_JOB_TIMEOUT_S", "12")
    cache = ArtifactCache()
    assert cache.root == tmp_path and cache.max_bytes == 3 * 2**20
    assert WarmPool().size == 5  # no process is started before warm_up() or run()
    assert Limits().timeout_s == 12


def test_the_cli_refuses_a_bad_setting_in_one_line(tmp_path):
    env = dict(os.environ, QUANT_CACHE_MAX_MB="lots", QUANT_CACHE_DIR=str(tmp_path), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "quant_core", "compare", str(tmp_path / "model.keras"),
                           "--images", str(tmp_path)], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "error: QUANT_CACHE_MAX_MB: expected an integer, 0 or more, got 'lots'\n"


def test_the_settings_page_is_the_generated_table():
    text = SETTINGS_MD.read_text()
    assert markdown_table() in text, ("docs/settings.md is not quant_core.config.markdown_table(): python -c "
                                      "\"from quant_core.config import markdown_table; print(markdown_table())\"")
    assert len(NAMES_READ) >= 30
    assert [name for name in NAMES_READ if f"`{name}`" not in text] == []
    assert sorted(set(_ENV_NAME.findall(text)) - set(NAMES_READ)) == []  # no variable the code does not read


def _reads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of each read of the environment that is not a named, non-QW_/QUANT_ variable.

    Writes (`os.environ[name] = ...`) are not reads; `os.environ.get("PYTHONPATH")` names one that is not a
    setting; `os.environ.get("QW_X")`, `os.getenv(NAME)` and `dict(os.environ)` are reads of settings.
    """
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}
                and isinstance(node.value, ast.Name) and node.value.id == "os") and not (
                isinstance(node, ast.Name) and node.id in {"environ", "getenv"}):
            continue
        parent = parents.get(node)
        key: ast.AST | None = None
        if isinstance(parent, ast.Subscript) and parent.value is node:
            if not isinstance(parent.ctx, ast.Load):
                continue
            key = parent.slice
        elif isinstance(parent, ast.Call) and parent.func is node:  # os.getenv(...)
            key = parent.args[0] if parent.args else None
        elif isinstance(parent, ast.Attribute) and isinstance(call := parents.get(parent), ast.Call):
            key, parent = (call.args[0] if call.args else None), call  # os.environ.get(...), .setdefault(...)
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)) or _ENV_NAME.match(key.value):
            found.append((node.lineno, ast.unparse(parent or node)))
    return found


def test_the_read_finder_finds_reads_of_settings_and_only_those():
    source = ("import os\nfrom os import environ\na = os.environ.get('QW_WORKERS', '2')\nb = os.getenv(NAME)\n"
              "c = dict(os.environ)\nd = environ['QUANT_CACHE_DIR']\nos.environ['TMPDIR'] = '/x'\n"
              "e = os.environ.get('PYTHONPATH', '')\nos.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')\n")
    assert sorted(line for line, _ in _reads(ast.parse(source))) == [3, 4, 5, 6]


def test_only_the_config_module_reads_settings_from_the_environment():
    files = [path for package in ("quant_core", "ui", "pages") for path in sorted((REPO / package).rglob("*.py"))]
    files.append(REPO / "streamlit_app.py")
    assert len(files) > 60
    reads = [f"{path.relative_to(REPO)}:{line}: {what}" for path in files
             if path != REPO / "quant_core" / "config.py" for line, what in _reads(ast.parse(path.read_text()))]
    assert reads == []
