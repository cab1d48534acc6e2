"""The errors a user can cause or meet, each with a message fit to show as it is.

Everything the CLI and the pages show comes from these: anything else is a bug.
"""


class GenderError(Exception):
    """A problem to report to the user in one clear line."""


def one_line(exc: BaseException) -> str:
    """Another library's message (pyarrow's span lines) as one line, to quote in a GenderError."""
    return " ".join(str(exc).split())


class DatabaseUnavailable(GenderError):
    """The database cannot be reached, refuses us, or lacks the FTP tables."""


class BadData(GenderError):
    """The database holds a value its column cannot mean (a shop's own SQLite file, written by
    other software): said with the value, never as a parser's traceback."""


class ImportFailed(GenderError):
    """An import stopped on bad input; nothing was written."""

    def __init__(self, source: str, reason: str, line: int | None = None, unit: str = "line"):
        where = f"{source}, {unit} {line}" if line is not None else source  # unit: "row" in a Parquet file
        super().__init__(f"{where}: {reason}")
        self.source, self.line, self.reason = source, line, reason


class ModelUnavailable(GenderError):
    """No usable model: missing, corrupt, tampered with or built for other features."""


class BadParquet(GenderError):
    """A Parquet file of the FTP tables that cannot be read as them: missing, unreadable, a column
    missing or of the wrong type. The message names the file and the column."""

    def __init__(self, path: object, reason: str, column: str | None = None):
        super().__init__(f"{path}: {reason}")
        self.path, self.column, self.reason = str(path), column, reason
