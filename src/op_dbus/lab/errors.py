"""The one error the lab raises: a message for a human, no traceback needed."""


class LabError(RuntimeError):
    pass
