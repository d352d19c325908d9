"""User-facing errors.

A ``MedclfError`` is a problem with the user's input (a path, a config key, a file): the CLI
prints its one-line message and exits with code 2, without a traceback unless ``--debug``.
Everything else is a bug and keeps its traceback.
"""


class MedclfError(Exception):
    """Bad input the user can fix; the message names the file or key and says what to do."""

    exit_code = 2
