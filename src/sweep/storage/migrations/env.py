"""Alembic environment for sweep's own tables.

Run through :meth:`sweep.storage.Database.upgrade` (``sweep db upgrade``), which passes an
open connection. The version table is ``sweep_alembic_version`` so that Optuna's own
``alembic_version`` in the same database is left alone.
"""

from __future__ import annotations

from alembic import context

from sweep.storage.schema import Base

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=config.get_main_option("version_table") or "sweep_alembic_version",
    # Only compare our tables; Optuna's live in the same database.
    include_name=lambda name, type_, _parent: (
        type_ != "table" or (name is not None and name.startswith("sweep_"))
    ),
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
