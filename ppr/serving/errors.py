"""Errors of on-device serving: all :class:`ppr.errors.PprError` (one line, exit code 2)."""

from __future__ import annotations

from ppr.errors import PprError


class ServingError(PprError):
    """Bad input to serving: a malformed user vector, an item id outside the catalog, a damaged or
    unknown index folder."""


class CodecError(ServingError):
    """An embedding cannot be stored in the requested format (unknown format, non-finite value,
    a value out of the format's range)."""


class BudgetError(ServingError):
    """No storage format and index fit the device's memory budget (the message names the budget
    and the smallest option's size)."""
