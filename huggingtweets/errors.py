"""The one exception type users see.

Every problem caused by input (a wrong path, a malformed archive, too little text, an unreachable model)
is raised as `HuggingTweetsError` with a single line that names the problem and what to do about it.
The CLI prints that line and exits with status 2; the app shows it in the page. Anything else is a bug.
"""


class HuggingTweetsError(Exception):
    """A user-facing error whose message is one line, without a traceback."""

    def __init__(self, message: str) -> None:
        # Keep messages to one line: they end up on stderr or in a widget.
        super().__init__(" ".join(message.split()))


class TooLittleText(HuggingTweetsError):
    """Raised when the cleaned posts hold too little text to fine-tune on."""


MAX_SEED = 2**32 - 1  # numpy's limit (Trainer seeds numpy too); torch takes more


def check_seed(seed: int | None) -> None:
    """A one-line error for a seed the random number generators would reject (mid-run, with a traceback)."""
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise HuggingTweetsError(f"seed must be between 0 and {MAX_SEED}, got {seed}")
