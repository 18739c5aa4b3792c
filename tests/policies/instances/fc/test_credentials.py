"""Credentials: secrets stay out of reprs and errors."""

from __future__ import annotations

import pytest

from policies.errors import ConfigError
from policies.instances.fc.credentials import Credentials, credentials_from_env


def test_repr_and_str_never_show_the_secret_or_the_token() -> None:
    creds = Credentials("LTAI5tAbCdEfGhIjKlMn", "very-secret-value", "sts-token-value")
    for text in (repr(creds), str(creds), repr([creds]), f"{creds}"):
        assert "very-secret-value" not in text
        assert "sts-token-value" not in text
        assert "LTAI5tAbCdEfGhIjKlMn" not in text


def test_credentials_come_from_the_standard_environment_variables() -> None:
    creds = credentials_from_env(
        {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": "id",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "secret",
            "ALIBABA_CLOUD_SECURITY_TOKEN": "token",
        }
    )
    assert (creds.access_key_id, creds.access_key_secret, creds.security_token) == (
        "id",
        "secret",
        "token",
    )


def test_missing_environment_variables_are_named_without_values() -> None:
    with pytest.raises(ConfigError) as caught:
        credentials_from_env({"ALIBABA_CLOUD_ACCESS_KEY_ID": "id"})
    assert caught.value.fields["missing"] == "ALIBABA_CLOUD_ACCESS_KEY_SECRET"


def test_empty_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Credentials("id", " ")
