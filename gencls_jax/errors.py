"""The two kinds of error a user sees as one line (`error: ...`, exit 1) rather than a traceback.

Every layer raises them (the data pipeline, the scorer, the runs, the commands), and the command
line catches exactly these two, so they live below everything.
"""


class DataError(ValueError):
    """A bad input file or setting; the message is one line naming the file and row."""


class RunError(RuntimeError):
    """A problem with the run as set up (workdir, checkpoint, config): the message says what to
    do."""
