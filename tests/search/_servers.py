"""Database URLs for server-backed tests, and unique study names that are cleaned up.

``SLIMSEARCH_TEST_POSTGRES_URL`` / ``SLIMSEARCH_TEST_MYSQL_URL`` are set by ``.ci/run``.
Outside CI a test skips when its URL is unset; with ``CI=true`` it fails instead, so a
server test can never silently not run in CI.
"""

from __future__ import annotations

import os
import uuid

import optuna
import pytest

POSTGRES = "SLIMSEARCH_TEST_POSTGRES_URL"
MYSQL = "SLIMSEARCH_TEST_MYSQL_URL"


def server_url(variable: str) -> str:
    """The URL in ``variable``; skip (outside CI) or fail (in CI) when it is unset."""
    url = os.environ.get(variable, "").strip()
    if url:
        return url
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{variable} is unset in CI; .ci/run must export it")
    pytest.skip(f"{variable} is unset (set it, or run .ci/run, to test this server)")


def unique_study(prefix: str) -> str:
    """A study name no other test (or concurrent test run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def delete_study(url: str, name: str) -> None:
    """Remove ``name`` from ``url`` if it exists (server databases outlive the test)."""
    try:
        optuna.delete_study(study_name=name, storage=url)
    except KeyError:
        pass
