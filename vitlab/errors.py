"""The one exception type a user sees: the CLI prints its message on one line, without a traceback."""


class VitlabError(Exception):
    """A problem with the user's input (file, folder, option, checkpoint) that they can fix."""


class Interrupted(VitlabError):
    """Training stopped by SIGINT or SIGTERM after finishing its step and saving ``last.pt``."""
