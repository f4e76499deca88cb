"""Alembic environment: runs the migrations on the connection `engine.store.migrate` hands over."""
from alembic import context
from sqlalchemy import create_engine

from engine.store import Base, _postgresql_where

config = context.config
_postgresql_where()  # the partial indexes' WHERE on PostgreSQL, as the models declare it
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata,
                          render_as_batch=conn.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()


run()
