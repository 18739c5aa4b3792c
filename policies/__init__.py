"""ExecGate's engine: everything the Slack bot, the MCP server and the CLI share.

- ``rules/``      the policy language: load YAML, compile, decide (pure, no I/O)
- ``service/``    ``ExecService``, the one path every surface calls: decide, record,
                  approve, run, scrub, store, record the outcome; sessions and collect
- ``redaction/``  secret scrubbing of output streams
- ``audit/``      the hash-chained audit store (SQLite, PostgreSQL), checkpoints, verify
- ``instances/``  providers: Function Compute client and the local sandbox
- ``artifacts/``  artifact stores (local with signed links, S3, OSS)
- ``collect/``    the file-collect protocol run on instances
- ``types.py``, ``errors.py``, ``ports.py``, ``units.py``, ``logctx.py``: shared values,
  the exception tree, the ports the service depends on, units and log context
"""
