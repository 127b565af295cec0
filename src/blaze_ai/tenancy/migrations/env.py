"""Alembic's environment for the tenancy schema.

Run only through :meth:`blaze_ai.tenancy.db.Database.migrate`, which passes its connection (in
``config.attributes["connection"]``) already inside the transaction that holds the migration
lock; the upgrade commits with that transaction. There is no offline (SQL script) mode.
"""

from __future__ import annotations

from alembic import context

from blaze_ai.tenancy.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the tenancy migrations with blaze_ai.tenancy.db.Database.migrate()")

context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
