"""The wire format and the store must be usable in a notebook or script without importing Airflow."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import airflow_provider_reclaim.wire.events
import airflow_provider_reclaim.wire.record
import airflow_provider_reclaim.wire.signature
import airflow_provider_reclaim.store.inbox
import airflow_provider_reclaim.store.ledger
print(sorted(name for name in sys.modules if name == "airflow" or name.startswith("airflow.")))
"""


def test_wire_and_store_import_without_airflow():
    completed = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )

    assert completed.stdout.strip() == "[]"
