"""The local instance host: an FC-compatible API over sandboxed local instances.

    app = build_fc_host_app(manager, {"KEY_ID": "secret"}, account_id="1234")

Run it under uvicorn with a websockets implementation (``ws="websockets-sansio"``) so
refused exec upgrades can carry their FC JSON error body.
"""

from server.fchost.app import build_fc_host_app

__all__ = ["build_fc_host_app"]
