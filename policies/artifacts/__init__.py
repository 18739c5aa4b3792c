"""Artifact stores: local files behind signed links, S3 and Alibaba Cloud OSS.

``build_store(config)`` picks one (``LocalConfig`` / ``S3Config`` / ``OssConfig``); all
implement ``policies.ports.ArtifactStore``. Keys are made by ``artifact_key``.
"""

from policies.artifacts.factory import LocalConfig, StoreConfig, build_store
from policies.artifacts.keys import artifact_key, link_label
from policies.artifacts.local import LocalArtifactStore
from policies.artifacts.oss import OssArtifactStore, OssConfig
from policies.artifacts.s3 import S3ArtifactStore, S3Config

__all__ = [
    "LocalArtifactStore",
    "LocalConfig",
    "OssArtifactStore",
    "OssConfig",
    "S3ArtifactStore",
    "S3Config",
    "StoreConfig",
    "artifact_key",
    "build_store",
    "link_label",
]
