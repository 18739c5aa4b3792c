"""Secrets recognised by their own shape, wherever they stand: cloud access key ids,
STS tokens, Slack, GitHub, GitLab, JWT, Google, Stripe, npm and PyPI tokens.

Applied after ``redact_shapes.KEY_RULES`` (``redact_rules.RULES``); ``TRIGGER`` flags
every line they can act on.
"""

from __future__ import annotations

from policies.redaction.rulebase import Rule, rule

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
    rule(
        "aws_key_id",
        r"(?<![A-Za-z0-9])(?P<val>(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16})(?![A-Za-z0-9])",
        "aws-access-key-id",
        (("akia", "asia", "abia", "acca", "a3t"),),
        starts=("AKIA", "ASIA", "ABIA", "ACCA", "A3T"),
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
