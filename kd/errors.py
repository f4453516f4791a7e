"""Errors a person can fix. Their message is shown as is (CLI: one line, exit code 2;
dashboard: st.error), so it names the field or file and says what is allowed."""


class KDError(Exception):
    """Base class: a problem with the input, not a bug."""


class ConfigError(KDError, ValueError):
    """A RunConfig field (or CLI flag) holds a value that is not allowed."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class UnknownKeyError(KDError, KeyError):
    """A registry key that does not exist; the message lists the valid keys."""

    def __init__(self, kind: str, key: str, valid: list[str]):
        self.kind, self.key, self.valid = kind, key, valid
        super().__init__(f"unknown {kind} {key!r}; choose one of: {', '.join(valid)}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


class FitError(KDError, ValueError):
    """An architecture that cannot be built for a data set's input shape or class count."""


class DataError(KDError, OSError):
    """A data set that cannot be loaded: missing folder or files, unreadable images."""
