"""Exceptions a user can cause. Each message says what to do about it."""


class SSSError(Exception):
    """Base class: the CLI prints these as one line, the app as a message."""


class RequestError(SSSError, ValueError):
    """An edit request (prompt, subject, target, C, ...) is not usable."""


class ModelLoadError(SSSError):
    """A model or tokenizer could not be loaded."""


class DataError(SSSError, ValueError):
    """A dataset file is malformed; the message names the record and the field."""


class EditFailed(SSSError):
    """An edit was abandoned (e.g. the loss became NaN); the model was restored."""
