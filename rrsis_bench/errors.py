"""The base class of errors a user can fix by changing an argument, a file or the machine.

Raise a subclass (which may also derive from ValueError, OSError, …) with a one-sentence message
naming the file or config key and the fix; the CLI prints it as one line, without a traceback.
"""


class UserError(Exception):
    """An error caused by the user's input or environment, with a message that says how to fix it."""
