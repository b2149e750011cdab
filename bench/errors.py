"""One family of errors; the CLI catches it in one place and prints one line."""


class BenchError(Exception):
    """Base class of every error the suite reports to the user as one line."""

    exit_code = 1


class UsageError(BenchError):
    """The user asked for something that cannot be done as asked (exit 2)."""

    exit_code = 2


class DataError(UsageError):
    """A data file is missing, truncated or altered."""


class RegistryError(UsageError):
    """Architecture discovery failed: an unknown or duplicate name."""


class PluginError(BenchError):
    """A plugin failed to load or broke the contract."""

    exit_code = 2

    def __init__(self, plugin: str, message: str):
        super().__init__(f"architecture {plugin!r}: {message}")
        self.plugin = plugin


class DiskFullError(BenchError):
    """A file could not be written for want of space (or the file-size limit, ``ulimit -f``)."""
