"""One base exception for the package; the CLI turns any of them into a one-line error."""

from __future__ import annotations

from pathlib import Path


class HelpersError(Exception):
    """An error a user can act on: says where it happened, what went wrong and what to do."""

    def __init__(
        self,
        reason: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.reason = reason
        self.path = Path(path) if path is not None else None
        self.line = line
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        text = f"{where}{self.reason}"
        return f"{text}. {self.fix}" if self.fix else text


class DownloadError(HelpersError):
    """The Chinook source distribution could not be fetched or failed verification."""


class InputError(HelpersError):
    """An input file or folder is missing or unusable as a whole."""
