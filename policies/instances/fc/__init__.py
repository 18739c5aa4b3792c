"""Function Compute instances: the InstanceExec / ListInstances client.

    FcProvider(name, FcEndpoint(account_id, region, ...), Credentials(id, secret))

``endpoint`` (FcEndpoint) and the pure protocol modules ``signing``, ``framing`` and
``responses`` are shared with the local FC-compatible instance host in ``server.fchost``.
"""

from policies.instances.fc.client import InvokeResult
from policies.instances.fc.credentials import Credentials, credentials_from_env
from policies.instances.fc.endpoint import FcEndpoint
from policies.instances.fc.provider import FcProvider

__all__ = ["Credentials", "FcEndpoint", "FcProvider", "InvokeResult", "credentials_from_env"]
