"""The error every state machine and request check raises, and the one transition check.

Requests (`requests.states`) and services (`services.states`) each declare their own table of
allowed transitions; this module only enforces a table.
"""
from __future__ import annotations

from flask_babel import lazy_gettext as _l


class LifecycleError(Exception):
    """A user asked for something the current state does not allow; the message says why.

    `field` names the form field the message belongs to, when there is one.
    """

    def __init__(self, message, field: str | None = None):
        super().__init__(str(message))
        self.message = message
        self.field = field


def move(obj, new: str, table: dict[str, set[str]]) -> None:
    """Set obj.status to `new` if `table` allows it from the current status."""
    if new not in table[obj.status]:
        raise LifecycleError(_l("This action is not possible while the status is “%(status)s”.",
                                status=obj.status))
    obj.status = new
