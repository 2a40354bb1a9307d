"""The publication store's schema, created and upgraded by Alembic (one revision file per change in versions/).

`upgrade(engine)` brings a database to the newest revision; several app servers starting at
once take turns (a PostgreSQL advisory lock; SQLite's BEGIN IMMEDIATE), so the upgrade runs once.
To add a change: write versions/NNNN_<what>.py with `revision`, `down_revision`, `upgrade()`.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent
_LOCK = 7120522  # advisory lock key for the upgrade (publications use another)


def config(connection: sa.Connection | None = None) -> Config:
    """An Alembic configuration for this package's scripts, bound to `connection` when given."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: sa.Engine) -> None:
    """Upgrades the database to the newest revision (a no-op when it is there)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_LOCK})"))
        command.upgrade(config(conn), "head")


def current(engine: sa.Engine) -> str | None:
    """The database's revision (None before the first upgrade)."""
    from alembic.runtime.migration import MigrationContext  # pylint: disable=import-outside-toplevel

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
