"""The CLI's exit codes (sysexits.h where one fits), shared by every subcommand."""

EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the audit store or an instance cannot be reached
EXIT_INTERNAL = 70  # EX_SOFTWARE
EXIT_PENDING = 75  # EX_TEMPFAIL: waiting for approval
EXIT_DENIED = 77  # EX_NOPERM
EXIT_CONFIG = 78  # EX_CONFIG
EXIT_TIMEOUT = 124  # as timeout(1)
