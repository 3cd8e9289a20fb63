"""The one exception type a user sees: the CLI prints its message on one line, without a traceback."""

from __future__ import annotations


class VitlabError(Exception):
    """A problem with the user's input (file, folder, option, checkpoint) that they can fix.

    ``field`` names what was wrong in the library's own terms, never a command-line flag: a config field in dotted
    form (``data.source``, ``train.init_weights``, ``model.preset``, ``train.epochs`` ...) or, for a function
    argument that is no config field, the Python parameter's name (``out``, ``resume``, ``fmt``, ``top_k`` ...;
    ``config`` and ``set`` for a YAML config file and a ``section.field=value`` override).
    ``value`` is the value it had, where the message is about it. ``str(e)`` is ``"field=value: message"``,
    ``"field: message"`` or the message alone; the CLI translates ``field`` to its flag (``--data`` ...).
    """

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        self.reason = message
        self.field = field
        self.value = value
        if field is not None and value is not None:
            text = f"{field}={value}: {message}"
        elif field is not None:
            text = f"{field}: {message}"
        else:
            text = message
        super().__init__(text)


class Interrupted(VitlabError):
    """Training stopped by SIGINT or SIGTERM after finishing its step and saving ``last.pt``."""
