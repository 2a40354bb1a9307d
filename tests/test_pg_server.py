"""The private PostgreSQL server the database tests run against: real, concurrent, loopback only, cleaned up."""

from __future__ import annotations

import os
import pwd
import socket
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa

from pg_server import find_binaries, postgres_server, server_version

pytestmark = pytest.mark.timeout(120)

ROWS_PER_WRITER = 50


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port`, IPv4 and IPv6 (from Linux's /proc/net)."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path("/proc/net", table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                # The kernel prints each 32-bit word of the address in host (little-endian) byte order.
                raw = b"".join(bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, len(address), 8))
                found.add(socket.inet_ntop(family, raw))
    return found


def port_is_closed(port: int) -> bool:
    """Nothing accepts connections on 127.0.0.1:`port`."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def write_then_count(engine: sa.Engine, table: sa.Table, who: str, barrier: threading.Barrier) -> int:
    """Insert ROWS_PER_WRITER rows in one transaction; return the rows it sees while the other writer's is open."""
    with engine.begin() as conn:
        conn.execute(sa.insert(table), [{"who": who, "n": n} for n in range(ROWS_PER_WRITER)])
        barrier.wait()  # both transactions are open, each with its rows not yet committed
        visible = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        barrier.wait()  # both have counted before either commits
    return visible


def test_two_concurrent_transactions_on_a_private_loopback_server() -> None:
    with postgres_server() as url:
        port = sa.make_url(url).port
        assert port is not None
        engine = sa.create_engine(url)
        try:
            assert server_version(url).split()[0][0].isdigit()
            with engine.connect() as conn:
                show = {name: conn.execute(sa.text(f"SHOW {name}")).scalar_one()
                        for name in ("listen_addresses", "unix_socket_directories", "data_directory", "fsync")}
            temp_dir = Path(show["data_directory"]).parent
            assert show["listen_addresses"] == "127.0.0.1"
            assert show["unix_socket_directories"] == str(temp_dir)  # never /var/run/postgresql
            assert (temp_dir / f".s.PGSQL.{port}").is_socket()
            assert show["fsync"] == "off"
            assert listening_addresses(port) == {"127.0.0.1"}
            # initdb refuses root: under root the cluster belongs to Debian's `postgres` user.
            owner = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
            assert Path(show["data_directory"]).stat().st_uid == owner

            table = sa.Table("rows", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                             sa.Column("who", sa.String(8), nullable=False), sa.Column("n", sa.Integer, nullable=False))
            table.metadata.create_all(engine)
            barrier = threading.Barrier(2, timeout=15)
            with ThreadPoolExecutor(2) as pool:
                seen = list(pool.map(lambda who: write_then_count(engine, table, who, barrier), ("a", "b")))
            # Each writer saw only its own uncommitted rows (read committed); both commits landed.
            assert seen == [ROWS_PER_WRITER, ROWS_PER_WRITER]
            with engine.connect() as conn:
                per_writer = dict(conn.execute(sa.select(table.c.who, sa.func.count()).group_by(table.c.who)).all())
            assert per_writer == {"a": ROWS_PER_WRITER, "b": ROWS_PER_WRITER}
        finally:
            engine.dispose()
    assert port_is_closed(port)
    assert not temp_dir.exists()


def test_the_server_stops_and_its_dir_goes_when_the_body_raises() -> None:
    with pytest.raises(ZeroDivisionError), postgres_server() as url:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            temp_dir = Path(conn.execute(sa.text("SHOW data_directory")).scalar_one()).parent
        engine.dispose()
        port = sa.make_url(url).port
        assert port is not None
        _ = 1 / 0
    assert port_is_closed(port)
    assert not temp_dir.exists()


def test_a_server_that_cannot_start_raises_with_its_log_and_leaves_nothing() -> None:
    before = set(Path(tempfile.gettempdir()).glob("qw-pg-*"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        expected = r"did not start(.|\n)*last lines of its log(.|\n)*already in use"
        with pytest.raises(RuntimeError, match=expected), postgres_server(port=port):
            pytest.fail("the server started on a port that is taken")
    assert set(Path(tempfile.gettempdir()).glob("qw-pg-*")) <= before


def test_missing_binaries_say_how_to_install_them(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"make services.*apt-get install postgresql"):
        find_binaries(search_path="", debian_root=tmp_path)


def test_the_newest_debian_version_is_chosen(tmp_path: Path) -> None:
    for version in ("9", "16", "15"):  # 16 is newest although "9" sorts last as text
        (tmp_path / version / "bin").mkdir(parents=True)
        for name in ("initdb", "pg_ctl", "postgres"):
            (tmp_path / version / "bin" / name).touch(mode=0o755)
    assert find_binaries(search_path="", debian_root=tmp_path) == tmp_path / "16" / "bin"
