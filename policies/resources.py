"""What records hold and what a plan grants: demands, allocations, effective quotas.

The Resources quantity itself lives in policies.quantities (re-exported here).
"""
from __future__ import annotations

from datetime import date
from typing import Any, Iterable, Mapping

from policies.model import Plan, Policies
from policies.quantities import Resources, _cores, _whole
from policies.vocabulary import KINDS, MAILBOX

# Statuses of requests, services and mailboxes that hold capacity. A request is passed only
# while it has produced nothing yet (its service, once created, is passed instead); a
# mailbox without a status counts. Anything else (rejected, cancelled, deleted, active
# request…) holds nothing.
COUNTED_STATUSES = frozenset({"submitted", "approved", "provisioning", "running", "stopped",
                              "failed", "deleting", "enabled", "disabled"})


def _field(record: Any, name: str, default: Any = None) -> Any:
    """Read `name` from a mapping or an object (a dict, a dataclass, an ORM row)."""
    if isinstance(record, Mapping):
        return record.get(name, default)
    return getattr(record, name, default)


def _target(policies: Policies | None, kind: str, record: Any, prefix: str) -> Resources | None:
    """What one record asks for: explicit resources, a size name, or a mailbox size in MiB."""
    explicit = _field(record, f"{prefix}resources")
    if kind == MAILBOX:
        mib = _field(record, f"{prefix}mail_mib")
        if mib is None and prefix:
            return None
        if mib is None:
            if policies is None or policies.mailbox is None:
                raise ValueError("mailbox: mail_mib is missing and no default is known")
            mib = policies.mailbox.default_mib
        return Resources(mailboxes=1, mail_storage_mib=mib)
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}, {MAILBOX}")
    if explicit is not None:
        data = {key: value for key, value in dict(explicit).items() if key != "services"}
        return Resources.from_dict(data) + Resources(services={kind: 1})
    size = _field(record, f"{prefix}size")
    if size is None:
        if prefix:
            return None
        raise ValueError(f"{kind}: neither a size nor resources given")
    if policies is None:
        raise ValueError(f"{kind} size {size!r}: pass the policies to resolve size names")
    try:
        spec = policies.size(kind, size)
    except KeyError:
        raise ValueError(f"{kind}: size {size!r} is unknown to sizes.yaml") from None
    return Resources(cpu=spec.cpu, memory_mib=spec.memory_mib, disk_mib=spec.disk_mib,
                     services={kind: 1})


def demand_of(record: Any, policies: Policies | None = None) -> tuple[Resources, Resources | None]:
    """(target, current) of a record; `current` is None unless it is a resize.

    A record is a mapping or object with `kind` and one of `size`, `resources` (dict) or, for
    mailboxes, `mail_mib`; a resize also carries `current_size` / `current_resources` /
    `current_mail_mib`.
    """
    kind = _field(record, "kind")
    target = _target(policies, kind, record, "")
    current = _target(policies, kind, record, "current_")
    return target, current


def holding_of(record: Any, policies: Policies | None = None) -> Resources:
    """What a record holds while it counts: a resize reserves only its increase."""
    target, current = demand_of(record, policies)
    return target if current is None else (target - current).positive()


def counts(record: Any) -> bool:
    status = _field(record, "status")
    return status is None or status in COUNTED_STATUSES


def allocation_of(items: Iterable[Any], policies: Policies | None = None) -> Resources:
    """Sum of what every counted item holds (requests not yet served, services, mailboxes).

    `policies` is needed as soon as an item names a size instead of explicit resources.
    """
    total = Resources()
    for item in items:
        if counts(item):
            total = total + holding_of(item, policies)
    return total


def exception_active(record: Any, today: date) -> bool:
    """A granted exception counts from its grant until its end date (inclusive)."""
    status = _field(record, "status")
    if status is not None and status != "granted":
        return False
    if _field(record, "revoked_at") is not None:
        return False
    ends_on = _field(record, "ends_on")
    return ends_on is None or ends_on >= today


def _amount(resource: str, amount: Any) -> float:
    if resource == "cpu":
        return _cores(amount)
    # Stored as a float column; whole resources must still be whole.
    return _whole(resource, round(amount, 6) if isinstance(amount, float) else amount)


def exceptions_total(exceptions: Iterable[Any], today: date) -> Resources:
    total = Resources()
    for record in exceptions:
        if exception_active(record, today):
            resource = _field(record, "resource")
            total = total + Resources.single(resource, _amount(resource, _field(record, "amount")))
    return total


def effective_quota(plan: Plan | Resources, exceptions: Iterable[Any] = (),
                    today: date | None = None) -> Resources:
    """The plan's quota plus every granted, unrevoked, unexpired exception.

    Exceptions are records with `resource` (a RESOURCES name), `amount`, and optionally
    `ends_on` (date, inclusive), `revoked_at` (set = not counted), `status` ("granted").
    """
    base = plan.quota if isinstance(plan, Plan) else plan
    return base + exceptions_total(exceptions, today or date.today())
