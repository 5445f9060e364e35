"""Errors of the secure-aggregation protocol.

Client input never raises (a bad update is rejected and logged, the round goes on); these errors
mark misuse by the orchestrating code or a round whose result cannot be trusted.
"""

from ppr.errors import PprError


class ProtocolError(RuntimeError):
    """A role was used against the protocol (second decryption in a round, private context
    given to the aggregator, cohort beyond the overflow capacity, ...). A programming error, not
    bad user input: it is not a :class:`PprError`, so the CLI shows its traceback."""


class AggregateRejectedError(PprError):
    """The key holder refused the decrypted aggregate of a round (non-finite or beyond the
    magnitude any honest cohort plus noise can reach: an undetectable bad ciphertext, e.g. one
    encrypted under another key with the same parameters, or an overflow)."""


class UpdateRejected(ValueError):
    """An update or device payload was rejected; the message is the logged reason."""
