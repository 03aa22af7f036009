"""Fixtures that start ``airflow-reclaim serve --self-signed`` on 127.0.0.1 for the HTTP tests.

Each server runs in its own process group. The fixtures stop it with SIGTERM, then SIGKILL,
also when a test fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from receiver_harness import ReceiverEnvironment, ReceiverFactory, ReceiverProcess, make_environment


@pytest.fixture(scope="module")
def receiver_environment(tmp_path_factory: pytest.TempPathFactory) -> ReceiverEnvironment:
    """Connections, secrets and an empty inbox for one test module."""
    return make_environment(tmp_path_factory.mktemp("reclaim_http"))


@pytest.fixture(scope="module")
def receiver(
    receiver_environment: ReceiverEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ReceiverProcess]:
    """A server shared by the tests of one module, stopped after the module even on failure."""
    process = ReceiverProcess(receiver_environment, tmp_path_factory.mktemp("receiver"))
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
def receiver_factory(tmp_path: Path) -> Iterator[ReceiverFactory]:
    """Start servers inside one test with a fresh environment. All are stopped at teardown."""
    factory = ReceiverFactory(make_environment(tmp_path), tmp_path / "receiver")
    try:
        yield factory
    finally:
        factory.stop_all()
