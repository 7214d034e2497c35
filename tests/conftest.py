"""Shared test fixtures.

Postgres cases run when ``RLMEM_TEST_POSTGRES_URL`` is set (``.ci/run`` sets it); each test
session gets a fresh database created from that URL and dropped afterwards, so parallel or
repeated runs never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from fakes import fake_anthropic, fake_openai  # noqa: F401  (fixtures for every test file)

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PG_URL = os.environ.get("RLMEM_TEST_POSTGRES_URL", "")


def _admin_engine():  # type: ignore[no-untyped-def]
    from sqlalchemy import create_engine

    from memory.db import _normalise_url

    return create_engine(_normalise_url(PG_URL), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a fresh, empty Postgres database for this test session (skips without one)."""
    if not PG_URL:
        pytest.skip("set RLMEM_TEST_POSTGRES_URL to run the Postgres cases")
    from sqlalchemy import text

    name = f"rlmem_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture()
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A Postgres database emptied of rlm-memory tables before each test."""
    from sqlalchemy import create_engine, text

    from memory.db import _normalise_url

    eng = create_engine(_normalise_url(pg_server_url), isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    eng.dispose()
    yield pg_server_url
