"""One exception type for problems the user can fix (bad file, bad flag).

The CLI prints ``UserError`` as a single line and exits non-zero; anything else is a bug and keeps
its traceback.
"""


class UserError(Exception):
    """A problem with the user's input: its message is one line naming the file/flag and what was expected."""
