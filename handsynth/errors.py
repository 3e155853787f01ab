"""The one exception type for errors a user can cause."""


class HandsynthError(Exception):
    """A problem with user input (text, style, file, option). The message says what to do."""
