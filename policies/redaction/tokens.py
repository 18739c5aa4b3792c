"""Secrets recognised by their own shape, wherever they stand: cloud access key ids (and
an AWS secret access key right after its key id), STS tokens, Slack, GitHub, GitLab,
JWT, Google, Stripe, OpenAI, npm and PyPI tokens.

Applied after ``redact_shapes.KEY_RULES`` (``redact_rules.RULES``); ``TRIGGER`` flags
every line they can act on.
"""

from __future__ import annotations

from policies.redaction.rulebase import Rule, rule

_AWS_KEY_ID = r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])"
_AWS_KEY_ID_STARTS = ("AKIA", "ASIA", "ABIA", "ACCA", "A3T")

TOKEN_RULES: tuple[Rule, ...] = (
    rule(
        "slack_webhook",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<val>[A-Za-z0-9_/-]+)",
        "slack-webhook",
        (("hooks.slack.com",),),
        starts=("hooks.slack.com",),
    ),
    rule(
        "alibaba_key_id",
        r"(?<![A-Za-z0-9])(?P<val>LTAI[A-Za-z0-9]{12,30})(?![A-Za-z0-9])",
        "alibaba-access-key-id",
        (("ltai",),),
        starts=("LTAI",),
    ),
    rule(
        "alibaba_sts",
        r"(?<![A-Za-z0-9+/])(?P<val>CAIS[A-Za-z0-9+/=_-]{36,})",
        "alibaba-sts-token",
        (("cais",),),
        starts=("CAIS",),
    ),
    # An AWS key id then, a few separators on, 40 characters of base64: the secret
    # access key (aws_credentials AKIA... wJalr..., the credentials CSV: AKIA...,wJalr...).
    # Before aws_key_id, which replaces the id.
    rule(
        "aws_secret_after_key_id",
        rf"{_AWS_KEY_ID}[^A-Za-z0-9/+=\n]{{1,8}}"
        r"(?P<val>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        "aws-secret",
        (("akia", "asia", "abia", "acca", "a3t"),),
        starts=_AWS_KEY_ID_STARTS,
    ),
    rule(
        "aws_key_id",
        rf"(?P<val>{_AWS_KEY_ID})",
        "aws-access-key-id",
        (("akia", "asia", "abia", "acca", "a3t"),),
        starts=_AWS_KEY_ID_STARTS,
    ),
    rule(
        "slack_token",
        r"(?<![A-Za-z0-9])(?P<val>xox(?:[abposre]|e\.xox[a-z])-[A-Za-z0-9-]{8,}"
        r"|xapp-[0-9]+-[A-Za-z0-9-]{8,})",
        "slack-token",
        (("xox", "xapp-"),),
        starts=("xox", "xapp-"),
    ),
    rule(
        "github_token",
        r"(?<![A-Za-z0-9_])(?P<val>gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})",
        "github-token",
        (("gh", "github_pat_"),),
        starts=("gh", "github_pat_"),
    ),
    rule(
        "gitlab_token",
        r"(?<![A-Za-z0-9_-])(?P<val>gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|oas)-[A-Za-z0-9_-]{20,})",
        "gitlab-token",
        (("gl",),),
        starts=("gl",),
    ),
    rule(
        "jwt",
        r"(?<![A-Za-z0-9_-])(?P<val>eyJ[A-Za-z0-9_-]{4,}\.ey[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*)",
        "jwt",
        (("eyj",),),
        starts=("eyJ",),
    ),
    rule(
        "google_api_key",
        r"(?<![A-Za-z0-9_-])(?P<val>AIza[0-9A-Za-z_-]{35})",
        "google-api-key",
        (("aiza",),),
        starts=("AIza",),
    ),
    rule(
        "stripe_key",
        r"(?<![A-Za-z0-9])(?P<val>[sr]k_(?:live|test)_[0-9A-Za-z]{16,})",
        "stripe-key",
        (("k_live_", "k_test_"),),
        starts=("sk_", "rk_"),
    ),
    # sk-proj-..., sk-svcacct-..., sk-admin-..., sk-ant-api03-... (OpenAI, Anthropic),
    # and the older sk-<48 letters and digits>
    rule(
        "openai_key",
        r"(?<![A-Za-z0-9_-])(?P<val>sk-(?:(?:proj|svcacct|admin|ant-[a-z0-9]+)-[A-Za-z0-9_-]{20,}"
        r"|(?=[A-Za-z]*[0-9])[A-Za-z0-9]{32,}(?![A-Za-z0-9_-])))",
        "openai-key",
        (("sk-",),),
        starts=("sk-",),
    ),
    rule(
        "npm_token",
        r"(?<![A-Za-z0-9_])(?P<val>npm_[A-Za-z0-9]{36})(?![A-Za-z0-9])",
        "npm-token",
        (("npm_",),),
        starts=("npm_",),
    ),
    rule(
        "pypi_token",
        r"(?<![A-Za-z0-9_-])(?P<val>pypi-AgE[A-Za-z0-9_-]{40,})",
        "pypi-token",
        (("pypi-",),),
        starts=("pypi-",),
    ),
)
