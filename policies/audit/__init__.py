"""The audit store: exec sessions, approvals and conversational sessions in SQLite or
PostgreSQL, every change appended to a hash chain with signed checkpoints.

    store = await open_audit_store(url, checkpoint_path=path, checkpoint_key=key)

The schema comes from migrations (``policies.audit.migrate.upgrade(url)``).
"""

from policies.audit.store import SqlAuditStore, open_audit_store

__all__ = ["SqlAuditStore", "open_audit_store"]
