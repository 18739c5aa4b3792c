"""Alembic migrations of the audit database.

``SCHEMA_HEAD`` names the newest revision so a process can tell, with one query and
without importing Alembic, whether the schema is current. A test keeps it in step
with the scripts.
"""

SCHEMA_HEAD = "0005"
