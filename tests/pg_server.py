"""A private PostgreSQL server for the tests: a fresh cluster in a temp dir, on a free loopback port.

It runs Debian's PostgreSQL binaries (`make services` installs them) and touches nothing of the system's own
cluster: its data, log and Unix socket live in the temp dir, it listens on 127.0.0.1 only, and it is stopped and
deleted when the context exits. initdb refuses to run as root, so under root the cluster belongs to Debian's
`postgres` system user and every PostgreSQL command runs as that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import sqlalchemy as sa

from live_server import free_port

DEBIAN_ROOT = Path("/usr/lib/postgresql")  # Debian installs each major version in <root>/<version>/bin
BINARIES = ("initdb", "pg_ctl", "postgres")
INSTALL_HINT = "run `make services` (or `sudo apt-get install postgresql`)"
START_TIMEOUT = 30.0  # seconds for the server to accept connections
# Throwaway data: no durability, little memory, few connections.
TUNING = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
          "shared_buffers": "'16MB'", "max_connections": "20"}


def find_binaries(*, search_path: str | None = None, debian_root: Path = DEBIAN_ROOT) -> Path:
    """The directory holding initdb, pg_ctl and postgres: the one of `initdb` on PATH, else Debian's newest.

    Args:
        search_path: the PATH to search (default: the environment's).
        debian_root: where Debian installs one `<version>/bin` per major version.

    Raises:
        RuntimeError: no directory holds all three.
    """
    candidates = []
    if initdb := shutil.which("initdb", path=search_path):
        candidates.append(Path(initdb).resolve().parent)  # a symlink on PATH points into the real bin dir
    versions = sorted((d for d in debian_root.glob("*") if d.name.isdigit()), key=lambda d: int(d.name))
    candidates += [d / "bin" for d in reversed(versions)]
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in BINARIES):
            return directory
    raise RuntimeError(f"PostgreSQL's server programs ({', '.join(BINARIES)}) are neither on PATH nor in "
                       f"{debian_root}/<version>/bin; {INSTALL_HINT}")


@contextmanager
def postgres_server(*, port: int | None = None, start_timeout: float = START_TIMEOUT) -> Iterator[str]:
    """Start a private PostgreSQL server with an empty database `qw`; yield its SQLAlchemy URL.

    The URL is `postgresql+psycopg://postgres@127.0.0.1:<port>/qw` (trust authentication, superuser `postgres`).
    The server is stopped and its temp dir deleted when the context exits, also when its body raises.

    Args:
        port: the loopback port to listen on (default: a free one).
        start_timeout: seconds the server has to come up.

    Raises:
        RuntimeError: the binaries or (under root) the `postgres` user are missing, or the server did not start
            (the message ends with the last lines of its log).
    """
    bin_dir, owner, port = find_binaries(), _owner(), port or free_port()
    root = Path(tempfile.mkdtemp(prefix="qw-pg-"))
    data, log = root / "data", root / "server.log"
    try:
        if owner:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        initdb = _run([bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8",
                       "--no-locale"], owner=owner, cwd=root, timeout=120)
        if initdb.returncode:
            raise RuntimeError(f"initdb failed in {root}:\n{initdb.stdout}{initdb.stderr}")
        settings = {"listen_addresses": "'127.0.0.1'", "port": str(port), "unix_socket_directories": f"'{root}'",
                    **TUNING}
        with (data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        # pg_ctl's own -t fires first, so a slow start ends with its message and the log, not a TimeoutExpired.
        started = _run([bin_dir / "pg_ctl", "-D", data, "-l", log, "-w", "-t", str(round(start_timeout)), "start"],
                       owner=owner, cwd=root, timeout=start_timeout + 15)
        if started.returncode:
            raise RuntimeError(f"PostgreSQL did not start on 127.0.0.1:{port} (limit {start_timeout:.0f} s): "
                               f"{started.stdout}{started.stderr}--- last lines of its log:\n{_tail(log)}")
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True,
                             connect_timeout=10) as conn:
            conn.execute("CREATE DATABASE qw")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/qw"
    finally:
        _stop(bin_dir, data, owner=owner, cwd=root)
        shutil.rmtree(root, ignore_errors=True)


def server_version(url: str) -> str:
    """The server's `SHOW server_version`, e.g. '15.18 (Debian 15.18-0+deb12u1)'."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SHOW server_version")).scalar_one())
    finally:
        engine.dispose()


def _owner() -> pwd.struct_passwd | None:
    """The account the server runs as: Debian's `postgres` under root (initdb refuses root), else None (us)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root, the test server needs the `postgres` system user that Debian's "
                           f"postgresql package creates; {INSTALL_HINT}") from None


def _run(args: list[str | Path], *, owner: pwd.struct_passwd | None, cwd: Path,
         timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program as `owner` (None: as us) without PG* variables, capturing its output."""
    # Python switches group, supplementary groups and user in the child: `runuser -u postgres --` without PAM.
    uid, gid, groups = (owner.pw_uid, owner.pw_gid, []) if owner else (None, None, None)
    env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False, user=uid, group=gid, extra_groups=groups)


def _stop(bin_dir: Path, data: Path, *, owner: pwd.struct_passwd | None, cwd: Path) -> None:
    """Stop the server at once (its data is thrown away); kill the postmaster if pg_ctl could not."""
    pid_file = data / "postmaster.pid"
    if not pid_file.exists():
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        _run([bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"], owner=owner, cwd=cwd, timeout=30)
    if pid_file.exists():  # its first line is the postmaster's pid
        with contextlib.suppress(ValueError, IndexError, ProcessLookupError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)


def _tail(log: Path, lines: int = 20) -> str:
    """The last lines of the server's log."""
    if not log.exists():
        return "(no log written)\n"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) + "\n"
