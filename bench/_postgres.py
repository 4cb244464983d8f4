"""What every benchmark needs from PostgreSQL: the DATABASE_URL check, connection parameters,
and creating its scratch database (via the `postgres` maintenance database)."""

from __future__ import annotations

import os
import sys
from typing import Any


def database_settings(script: str, example_db: str) -> dict[str, Any]:
    """DATABASE_URL parsed as Django does; exits with a clear message unless it is PostgreSQL."""
    import dj_database_url

    url = os.environ.get("DATABASE_URL", "")
    config = dj_database_url.parse(url) if url else {}
    if "postgresql" not in config.get("ENGINE", "") and "postgis" not in config.get("ENGINE", ""):
        shown = url or "(not set: the SQLite default)"
        print(
            f"bench/{script} measures PostgreSQL; DATABASE_URL is {shown}.\n"
            f"Run it as: DATABASE_URL=postgres://postgres@127.0.0.1:5432/{example_db} "
            f".venv/bin/python bench/{script}",
            file=sys.stderr,
        )
        sys.exit(2)
    return dict(config)


def conninfo(config: dict[str, Any], dbname: str) -> dict[str, Any]:
    info = {
        "dbname": dbname,
        "user": config.get("USER") or None,
        "password": config.get("PASSWORD") or None,
        "host": config.get("HOST") or None,
        "port": config.get("PORT") or None,
    }
    return {k: v for k, v in info.items() if v is not None}


def ensure_database(config: dict[str, Any]) -> None:
    """Create the database named by DATABASE_URL unless it exists."""
    import psycopg
    from psycopg import sql

    name = config["NAME"]
    with psycopg.connect(**conninfo(config, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")


def ensure_database_url(url: str) -> None:
    import dj_database_url

    ensure_database(dict(dj_database_url.parse(url)))
