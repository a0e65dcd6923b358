"""Errors that the CLI turns into one clear line instead of a traceback."""


class IocError(Exception):
    """A problem the user can fix; its message is shown as-is, on one line."""


class ConfigError(IocError):
    """A setting is missing or wrong; the message names the setting."""


class ServiceUnavailable(IocError):
    """A service (broker, database, ...) cannot be reached; the message names it."""
