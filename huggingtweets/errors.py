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
