"""What the Slack bot is configured with; built once by whoever hosts it."""

from __future__ import annotations

from dataclasses import dataclass, field

SLACK_API_URL = "https://slack.com/api/"


@dataclass(frozen=True)
class BotConfig:
    """Tokens stay out of ``repr``; ``signing_secret`` is None in Socket Mode."""

    bot_token: str = field(repr=False)
    signing_secret: str | None = field(default=None, repr=False)
    api_base_url: str = SLACK_API_URL
    approvals_channel: str = ""
    command: str = "/exec"
    # Section blocks hold at most 3,000 characters.
    inline_chars: int = 3000
    directory_ttl: float = 300.0
    # When the inline view had to omit output and no link to the full output exists,
    # attach the full (scrubbed) output as a file, up to this many characters.
    upload_full_output: bool = True
    full_output_max_chars: int = 1_000_000
