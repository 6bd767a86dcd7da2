"""The one exception tree: every error raised on purpose derives from ``ClickTrackError``.

Each class says what went wrong in the caller's terms, and with it the HTTP status an API
call answers (``app/api/errors.py`` maps them, in one place, to ``{"error": <kind>,
"message": <text>}``) and the CLI's one-line message (``app/cli.py``)::

    ClickTrackError                   500 internal   (not meant to reach a caller)
     ├── InvalidInput                 422 invalid    the input breaks a rule
     │    ├── LinkError                               a link's code or destination
     │    ├── PlanError                               a commission plan file or document
     │    ├── PublisherError                          a publisher's name or network
     │    ├── MerchantError                           a merchant's name or hosts
     │    ├── RangeError                              a report's day range
     │    └── PeriodError                             a month or period name (YYYY-MM)
     ├── Unauthorized                 401 unauthorized no or a wrong credential
     │    └── SignatureError                          a postback's HMAC signature
     ├── Forbidden                    403 forbidden    a credential without the right
     ├── NotFound                     404 not_found    nothing of that id for this caller
     ├── Conflict                     409 conflict     valid, but the stored state refuses it
     │    ├── CodeTaken                               a custom link code already in use
     │    │                                           (also a LinkError; 409 wins)
     │    ├── PlanInUse                               a plan already applied to a closed period
     │    ├── OrderConflict                           a postback contradicting a stored order
     │    ├── WithdrawalRefused                       balance, minimum, fee or request day
     │    ├── WithdrawalStateConflict                 a withdrawal step its status refuses
     │    ├── PeriodNotEnded                          a period closed before its end
     │    └── BeforeHistory                           a period before a publisher's first close
     ├── TooLarge                     413 too_large    a body over the limit
     └── Unavailable                  503 unavailable  a store needed right now does not answer
          ├── LinkUnavailable                         the redirect cannot resolve a link
          └── NotRecorded                             the redirect cannot record a click

``PlanError``, ``RangeError`` and ``PeriodError`` also derive from ``ValueError`` (as
``EventError`` does): code that catches ``ValueError`` still catches them.

Errors of a process's own set-up or data, never shown to an API caller, derive from
``ClickTrackError`` directly: ``ConfigError`` (settings), ``MigrationError`` (schema),
``EventError`` (a stream entry that is not a click: a dead letter; its subclass
``UnknownVersion``, a record of a major version the reader does not read: parked),
``PartitionError`` (a click's day has no partition), and ``CliError`` (the CLI's own
messages). Each class lives beside the rule it reports; this module holds the branches.

Code raises the error where the rule is broken, naming the input with ``field=`` where it
knows it, and does not catch it to raise another: routes let it propagate to the handler,
the CLI's ``main`` prints ``error: <describe()>`` and exits 1.
"""

from __future__ import annotations


class ClickTrackError(Exception):
    """Base of every error raised on purpose. ``message`` is plain words for a person;
    ``field``, when set, names the input at fault (an API answer shows ``field: message``)."""

    status = 500
    kind = "internal"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def describe(self) -> str:
        """The message as a caller reads it: ``<field>: <message>`` when a field is named."""
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidInput(ClickTrackError):
    status = 422
    kind = "invalid"


class Unauthorized(ClickTrackError):
    status = 401
    kind = "unauthorized"


class Forbidden(ClickTrackError):
    status = 403
    kind = "forbidden"


class NotFound(ClickTrackError):
    status = 404
    kind = "not_found"


class Conflict(ClickTrackError):
    status = 409
    kind = "conflict"


class TooLarge(ClickTrackError):
    status = 413
    kind = "too_large"


class Unavailable(ClickTrackError):
    status = 503
    kind = "unavailable"
