"""Which errors make a shipment command poison: the database refuses its data.

A data error (SQLSTATE class 22, e.g. a NUL byte in a product id), an integrity violation
(class 23) or a program limit (class 54, e.g. an id too long for its index) fails the same
command the same way every time. Anything else (the database or the broker away, a lost
connection, a bug in a statement) is retried for ever, since the command is not at fault.
"""

from __future__ import annotations

from typing import Final

import psycopg
from psycopg import errors

from process_manager import reason_of

POISON: Final = (psycopg.DataError, psycopg.IntegrityError, errors.ProgramLimitExceeded)


def is_poison(error: BaseException) -> bool:
    """Whether ``error`` is the database refusing a command's data."""
    return isinstance(error, POISON)


def reason(error: BaseException, attempts: int) -> str:
    """The dead letter's and the rejection's reason: what the database said, without a trace."""
    return f"poison command, given up after {attempts} attempts: {reason_of(error)}"
