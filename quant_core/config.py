"""Every setting the product reads from the environment: name, type, default and meaning, in one place.

`config()` is this process's `Config`. It is parsed from `os.environ` when first asked for and
again only after one of these variables changed (tests set them with monkeypatch); a worker
process inherits the server's environment and reads its own. An empty value means the default.
A bad value is a one-line `InputError` naming the variable. docs/settings.md holds
`markdown_table()`, and a test keeps the two equal.

Other modules never read these variables themselves (tests/test_config.py checks it).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from quant_core.errors import InputError

EXECUTORS = ("local", "ray")  # quant_core.serving.executors.ExecutorKind's values (a test keeps them equal)


@dataclass(frozen=True)
class Kind:
    """How a variable's text becomes a value: `parse` raises ValueError when the text is not `expected`."""

    expected: str
    parse: Callable[[str], Any]


def _count(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """A parser of whole numbers from `minimum` to `maximum` (None: no upper bound)."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(text)
        return value
    return parse


def _amount(text: str) -> float:
    """A non-negative number (inf allowed: no limit)."""
    value = float(text)
    if math.isnan(value) or value < 0:
        raise ValueError(text)
    return value


def _flag(text: str) -> bool:
    """On or off: 1/0, true/false, yes/no, on/off."""
    word = text.strip().lower()
    if word not in {"0", "1", "false", "true", "no", "yes", "off", "on"}:
        raise ValueError(text)
    return word in {"1", "true", "yes", "on"}


def _choice(text: str) -> str:
    """One of EXECUTORS."""
    if text.strip() not in EXECUTORS:
        raise ValueError(text)
    return text.strip()


def _names(text: str) -> tuple[str, ...]:
    """Comma-separated names, blanks dropped."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


POSITIVE = Kind("a positive integer", _count(1))
COUNT = Kind("an integer, 0 or more", _count(0))
NICENESS = Kind("an integer from 0 to 19", _count(0, 19))
SECONDS = Kind("a number of seconds, 0 or more", _amount)
AMOUNT = Kind("a number, 0 or more", _amount)
FLAG = Kind("0 or 1", _flag)
EXECUTOR = Kind(" or ".join(EXECUTORS), _choice)
PATH = Kind("a path", Path)
TEXT = Kind("text", str)
NAMES = Kind("module names separated by commas", _names)


def _about(env: str, kind: Kind, meaning: str, *, shown: str | None = None, old: str | None = None) -> dict[str, Any]:
    """A Config field's metadata: its variable, how it is read, what it means, its default as the docs write it.

    `old` is the variable's former name, still read when the new one is unset (an old deployment keeps working).
    """
    return {"env": env, "kind": kind, "meaning": meaning, "shown": shown, "old": old}


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "quant-workbench"


def _default_session_root() -> Path:
    return Path(tempfile.gettempdir()) / "quant-workbench-sessions"


def _default_ray_tmpdir() -> Path:
    return Path(f"/tmp/qw-ray-{os.getuid()}")  # not $TMPDIR: a job's folder goes when the job ends, Ray's must stay


@dataclass(frozen=True)
class Config:
    """The product's settings, one field per environment variable (see each field's `meaning`)."""

    # The content-addressed cache on disk.
    cache_dir: Path = field(default_factory=_default_cache_dir, metadata=_about(
        "QUANT_CACHE_DIR", PATH, "the cache of models, builds, results and descriptions, shared by the server, its "
        "workers and the CLI", shown="~/.cache/quant-workbench"))
    cache_max_mb: int = field(default=2048, metadata=_about(
        "QUANT_CACHE_MAX_MB", COUNT, "the cache's cap in MB; least recently used entries go first (those used in the "
        "last 10 minutes stay)"))
    # Worker processes: every job runs in one.
    workers: int = field(default=2, metadata=_about(
        "QW_WORKERS", POSITIVE, "jobs that run at once, each in its worker process; further requests wait, and say so"))
    worker_nice: int = field(default=10, metadata=_about(
        "QW_WORKER_NICE", NICENESS, "how much lower a worker's CPU priority is than the server's, so pages stay "
        "responsive (its session's too, under the kernel's autogroup scheduling)"))
    job_timeout_s: float = field(default=1800.0, metadata=_about(
        "QW_JOB_TIMEOUT_S", SECONDS, "a job's wall-clock limit in seconds; its worker is killed after it"))
    job_memory_mb: int = field(default=6144, metadata=_about(
        "QW_JOB_MEMORY_MB", POSITIVE, "a job's resident-memory limit in MB; its worker is killed above it"))
    cancel_grace_s: float = field(default=20.0, metadata=_about(
        "QW_CANCEL_GRACE_S", SECONDS, "seconds a cancelled job has to stop (a converter call can take ~10 s) before "
        "its worker is killed"))
    job_modules: tuple[str, ...] = field(default=(), metadata=_about(
        "QW_JOB_MODULES", NAMES, "extra modules whose jobs workers register, comma-separated (the tests' misbehaving "
        "jobs)"))
    # The warm pool: workers kept alive per model, so a what-if costs its own work only.
    warm_workers: int = field(default=2, metadata=_about(
        "QW_WARM_WORKERS", COUNT, "warm workers kept, one per model and preprocessing; the least recently used is "
        "closed first", old="QW_WARM_ENGINES"))
    worker_idle_s: float = field(default=900.0, metadata=_about(
        "QW_WORKER_IDLE_S", SECONDS, "seconds a warm worker may wait for a request before it is closed",
        old="QW_ENGINE_IDLE_S"))
    worker_keep_mb: float = field(default=4096.0, metadata=_about(
        "QW_WORKER_KEEP_MB", AMOUNT, "a warm worker grown beyond this many MB is closed after its request instead of "
        "kept", old="QW_ENGINE_KEEP_MB"))
    spare_worker: bool = field(default=True, metadata=_about(
        "QW_SPARE_WORKER", FLAG, "keep one spare worker with TensorFlow imported, so a new model does not wait for the "
        "import", shown="1", old="QW_SPARE_ENGINE"))
    worker_wait_s: float = field(default=600.0, metadata=_about(
        "QW_WORKER_WAIT_S", SECONDS, "seconds a request waits for its model's busy warm worker before starting "
        "another", old="QW_ENGINE_WAIT_S"))
    worker_workbenches: int = field(default=2, metadata=_about(
        "QW_WORKER_WORKBENCHES", COUNT, "models each worker keeps open with their images and measured variants",
        old="QW_ENGINE_WORKBENCHES"))
    prepare: bool = field(default=True, metadata=_about(
        "QW_PREPARE", FLAG, "prepare a described model in the background (float conversion and float32 baseline)",
        shown="1"))
    # Whole-dataset evaluation (the Full dataset page, the CLI's --executor).
    datasets_dir: Path | None = field(default=None, metadata=_about(
        "QW_DATASETS_DIR", PATH, "the folder whose datasets the Full dataset page offers (unset: the bundled "
        "samples' photo folders)"))
    evaluation_timeout_s: float = field(default=12 * 3600.0, metadata=_about(
        "QW_EVALUATION_TIMEOUT_S", SECONDS, "a whole-dataset evaluation's time limit in seconds (its other limits "
        "are a job's)"))
    executor: str = field(default="local", metadata=_about(
        "QW_EXECUTOR", EXECUTOR, "where whole-dataset evaluations run: in the worker (local) or as Ray tasks (ray); "
        "the CLI's --executor wins"))
    ray_address: str | None = field(default=None, metadata=_about(
        "QW_RAY_ADDRESS", TEXT, "a Ray cluster to join, e.g. auto or ray://head:10001 (unset: a local Ray on "
        "127.0.0.1); the CLI's --ray-address wins"))
    ray_cpus: int | None = field(default=None, metadata=_about(
        "QW_RAY_CPUS", POSITIVE, "CPUs of a local Ray (unset: the CPUs this process may use)"))
    ray_tmpdir: Path = field(default_factory=_default_ray_tmpdir, metadata=_about(
        "QW_RAY_TMPDIR", PATH, "a local Ray's own files", shown="/tmp/qw-ray-<uid>"))
    ray_connect_timeout_s: float = field(default=10.0, metadata=_about(
        "QW_RAY_CONNECT_TIMEOUT_S", SECONDS, "how long joining a Ray cluster may wait for its head to answer before "
        "one line names the address"))
    ray_head_grace_s: float = field(default=15.0, metadata=_about(
        "QW_RAY_HEAD_GRACE_S", SECONDS, "how long a running evaluation waits for a Ray head that stopped answering "
        "before it stops, keeping the shards done (Ray itself ends a driver whose head is gone for 60 s)"))
    shard_timeout_s: float = field(default=600.0, metadata=_about(
        "QW_SHARD_TIMEOUT_S", SECONDS, "a Ray shard not back this long after it was handed out (two are queued per "
        "CPU) is taken as hung: its worker is stopped and the shard runs again"))
    # The web app's sessions.
    session_root: Path = field(default_factory=_default_session_root, metadata=_about(
        "QW_SESSION_ROOT", PATH, "the folder (mode 0700) holding each session's private upload folder",
        shown="<temp>/quant-workbench-sessions"))
    session_grace_s: float = field(default=30 * 60.0, metadata=_about(
        "QW_SESSION_GRACE_S", SECONDS, "seconds an ended session's folder is kept for a browser that reconnects"))
    session_max_age_s: float = field(default=24 * 3600.0, metadata=_about(
        "QW_SESSION_MAX_AGE_S", SECONDS, "a session folder older than this many seconds is removed, session active "
        "or not"))
    session_sweep_s: float = field(default=60.0, metadata=_about(
        "QW_SESSION_SWEEP_S", SECONDS, "the app looks for session folders to remove at most this often (seconds)"))
    abandon_s: float = field(default=30.0, metadata=_about(
        "QW_ABANDON_S", SECONDS, "a run whose browser session has been gone this many seconds is stopped and its "
        "worker killed"))
    # Published comparisons.
    store_dir: Path | None = field(default=None, metadata=_about(
        "QW_STORE_DIR", PATH, "the publication store's folder: its SQLite file and the blobs",
        shown="~/.local/share/quant-workbench/publications"))
    database_url: str | None = field(default=None, metadata=_about(
        "QW_DATABASE_URL", TEXT, "a database for the publication records, e.g. postgresql+psycopg://user@host/db "
        "(unset: SQLite in QW_STORE_DIR)"))
    publish_days: float = field(default=30.0, metadata=_about(
        "QW_PUBLISH_DAYS", AMOUNT, "days a publication is kept"))
    publish_max_mb: float = field(default=2048.0, metadata=_about(
        "QW_PUBLISH_MAX_MB", AMOUNT, "the publication store's cap in MB; a publish that would pass it is refused"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Config:
        """The settings `environ` gives; unset or empty variables take their defaults.

        A variable renamed is read by its new name first, then by its old one.

        Raises:
            InputError: a value that is not what its variable takes, e.g.
                "QW_WORKERS: expected a positive integer, got 'x'" (naming the variable read).
        """
        values: dict[str, Any] = {}
        for f in fields(cls):
            names = [f.metadata["env"]] + ([f.metadata["old"]] if f.metadata["old"] else [])
            name = next((name for name in names if environ.get(name, "").strip()), None)
            if name is not None:
                values[f.name] = _parse(name, f.metadata["kind"], environ[name])
        return cls(**values)


def _parse(env: str, kind: Kind, text: str) -> Any:
    """`text` read as `kind`, or the one-line error naming `env` (text is taken as written, the rest stripped)."""
    try:
        return kind.parse(text.strip() if kind is not TEXT else text)
    except ValueError:
        raise InputError(f"{env}: expected {kind.expected}, got {text!r}") from None


# Every variable Config reads, former names included.
NAMES_READ = tuple(name for f in fields(Config) for name in (f.metadata["env"], f.metadata["old"]) if name)
_last: list[tuple[tuple[str | None, ...], Config]] = []  # the environment last parsed, and its Config


def config() -> Config:
    """This process's settings: parsed at the first call, and again only after one of the variables changed.

    Raises:
        InputError: a variable holds a value it does not take (see `Config.from_env`).
    """
    seen = tuple(os.environ.get(name) for name in NAMES_READ)
    if not _last or _last[0][0] != seen:
        _last[:] = [(seen, Config.from_env(os.environ))]
    return _last[0][1]


def markdown_table() -> str:
    """docs/settings.md's table: each variable (and its former name), its default and its meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(Config):
        name = f"`{f.metadata['env']}`" + (f" (was `{f.metadata['old']}`)" if f.metadata["old"] else "")
        rows.append(f"| {name} | {_shown(f.metadata['shown'], f.default)} | {f.metadata['meaning']} |")
    return "\n".join(rows) + "\n"


def _shown(shown: str | None, default: Any) -> str:
    """A default as the table writes it: code, or the word unset."""
    if shown is None and default in (None, ()):
        return "unset"
    text = shown or (f"{default:g}" if isinstance(default, float) else str(default))
    return f"`{text}`"
