"""Fixtures the format-2 test modules share: each module gets its own databases and bucket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pgautodumper.scratch import ThrowawayPostgres
from tests.integration.format2 import Databases, create_bucket, databases


@pytest.fixture(scope="module")
def dbs(pg: ThrowawayPostgres) -> Iterator[Databases]:
    with databases(pg) as created:
        yield created


@pytest.fixture(scope="module")
def bucket_name() -> str:
    return create_bucket()
