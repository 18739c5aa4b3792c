"""Alembic migrations of the audit database.

The newest revision is named once, in ``policies.audit.revision.SCHEMA_HEAD``; a test
keeps it in step with the scripts here.
"""
