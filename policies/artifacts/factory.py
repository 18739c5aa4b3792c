"""Choose the artifact store from explicit configuration (the server reads settings)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from policies.artifacts.oss import OssArtifactStore, OssConfig
from policies.artifacts.s3 import S3ArtifactStore, S3Config
from policies.ports import ArtifactStore


@dataclass(frozen=True, slots=True)
class LocalConfig:
    root: Path
    signing_key: bytes
    base_url: Callable[[], str]
    default_ttl: float = 3600.0
    clock: Callable[[], float] = time.time

    def __repr__(self) -> str:
        return f"LocalConfig(root={self.root!r})"


StoreConfig = LocalConfig | S3Config | OssConfig


def build_store(config: StoreConfig) -> ArtifactStore:
    """The store ``config`` describes. Nothing is contacted until the first upload.

    Raises: ArtifactError for an unusable local signing key.
    """
    from policies.artifacts.local import LocalArtifactStore

    if isinstance(config, LocalConfig):
        return LocalArtifactStore(
            config.root,
            signing_key=config.signing_key,
            base_url=config.base_url,
            default_ttl=config.default_ttl,
            clock=config.clock,
        )
    if isinstance(config, S3Config):
        return S3ArtifactStore(config)
    return OssArtifactStore(config)
