"""The store: the state directory, its DuckDB file and its Parquet segments of flows.

``Store`` (in ``database``) is what the rest of vpcwatch uses; the other modules each hold
one part of it: ``ledger`` (what became of each object), ``segments`` (the flow files and
their list), ``detections`` (the alerts rules write), ``retention``, ``schema`` (tables and
upgrades), ``transaction`` (the one way to write), ``statedir`` (the directory and its lock),
``opening`` (the lock taken, or a running collector's publication attached).
"""

from core.store.database import DATABASE_NAME, CommitStats, Store, StoreError
from core.store.ledger import Candidate
from core.store.opening import open_store

__all__ = ["DATABASE_NAME", "Candidate", "CommitStats", "Store", "StoreError", "open_store"]
