"""Reading a corpus's list files (protocols, splits, trial lists, annotations) line by line.

Every corpus module parses its own line format; this module owns what they share: blank
lines skipped, each kept line handed to a parser, and any ``ValueError`` the parser raises
turned into a :class:`ProtocolFileError` that names the file and the line, before anything
trains on a wrong list.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

__all__ = ["MAX_LISTED", "ProtocolFileError", "read_list_file", "repeated"]

#: Malformed lines quoted in one error (every one is counted).
MAX_LISTED = 20


class ProtocolFileError(ValueError):
    """A malformed line of a corpus list file: the message starts with ``file:line:``."""


def read_list_file(
    path: str | os.PathLike,
    parse: Callable[[str], T],
    *,
    select: Callable[[str], bool] | None = None,
    empty: str = "no entries",
    error: type[ProtocolFileError] = ProtocolFileError,
    errors: str = "strict",
    numbered: bool = False,
) -> list[T]:
    """Parse every non-blank line of ``path`` (those ``select`` accepts) with ``parse``.

    Parameters
    ----------
    path : path
    parse : callable
        The line without its line break -> an entry; raises ``ValueError`` with what is
        wrong (the line's text is appended to the message).
    select : callable, optional
        Lines to parse (others, such as headers, are skipped).
    empty : str
        Message when no line was parsed.
    error : type
        The :class:`ProtocolFileError` subclass to raise.
    errors : str
        Text decoding errors (``"replace"`` for annotation files with stray bytes).
    numbered : bool
        Return ``(line number, entry)`` pairs (for messages that name the line).

    Raises
    ------
    ProtocolFileError
        ``"<path>:<line>: <what>; got '<line>'"`` for every malformed line (the first
        :data:`MAX_LISTED` quoted, the rest counted), or ``"<path>: <empty>"``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "list.txt"
    >>> _ = f.write_text("1 a\\n\\n2 b\\n")
    >>> read_list_file(f, lambda line: int(line.split()[0]))
    [1, 2]
    """
    path = Path(path)
    entries, problems = [], []
    with open(path, encoding="utf-8", errors=errors) as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip() or (select is not None and not select(line)):
                continue
            try:
                entry = parse(line)
            except ProtocolFileError:
                raise
            except ValueError as err:
                problems.append(f"{path}:{lineno}: {err}; got {line.strip()!r}")
                continue
            entries.append((lineno, entry) if numbered else entry)
    if problems:
        more = f"\n... and {len(problems) - MAX_LISTED} more malformed lines" if len(problems) > MAX_LISTED else ""
        raise error("\n".join(problems[:MAX_LISTED]) + more)
    if not entries:
        raise error(f"{path}: {empty}")
    return entries


def repeated(entries, describe=str) -> list[str]:
    """One message per key given more than once: ``entries`` are ``(key, where)`` pairs.

    >>> repeated([("a", "f:1"), ("b", "f:2"), ("a", "f:7")])
    ["'a' is listed more than once (f:1, f:7)"]
    """
    seen: dict = {}
    for key, where in entries:
        seen.setdefault(key, []).append(where)
    return [f"{describe(key)!r} is listed more than once ({', '.join(map(str, w))})"
            for key, w in seen.items() if len(w) > 1]
