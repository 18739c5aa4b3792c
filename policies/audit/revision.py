"""The newest schema revision of the audit database.

``SCHEMA_HEAD`` lets a process tell, with one query and without importing Alembic,
whether the schema is current. A test keeps it in step with the migration scripts.
"""

SCHEMA_HEAD = "0010"
