"""Alembic's entry point: runs the revisions on the connection `quant_core.store.migrations.upgrade` passes in."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through quant_core.store.migrations.upgrade(engine)")
context.configure(connection=connection, target_metadata=None, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
