"""Quantities of capacity (what a plan grants, what an institution holds) and how to add them."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from policies.model import KINDS, MAILBOX, RESOURCES, Plan

if TYPE_CHECKING:  # pragma: no cover
    from policies.model import Policies

# Statuses of requests, services and mailboxes that hold capacity. A request is passed only
# while it has produced nothing yet (its service, once created, is passed instead); a
# mailbox without a status counts. Anything else (rejected, cancelled, deleted, active
# request…) holds nothing.
COUNTED_STATUSES = frozenset({"submitted", "approved", "provisioning", "running", "stopped",
                              "failed", "deleting", "enabled", "disabled"})
_SCALARS = ("cpu", "memory_mib", "disk_mib", "mailboxes", "mail_storage_mib")


def _whole(resource: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"{resource}: expected a whole number, got {value!r}")
    return int(value)


def _cores(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"cpu: expected a number, got {value!r}")
    # Millicore precision: sums of 0.1 + 0.2 must compare equal to 0.3.
    return round(float(value), 3) + 0.0


@dataclass(frozen=True)
class Resources:
    """CPU cores, MiB and counts; values may be negative for differences (a resize's delta)."""

    cpu: float = 0.0
    memory_mib: int = 0
    disk_mib: int = 0
    services: Mapping[str, int] = field(default_factory=dict)  # kind -> count; absent = 0
    mailboxes: int = 0
    mail_storage_mib: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "cpu", _cores(self.cpu))
        for name in ("memory_mib", "disk_mib", "mailboxes", "mail_storage_mib"):
            object.__setattr__(self, name, _whole(name, getattr(self, name)))
        services = {}
        for kind, count in dict(self.services).items():
            if kind not in KINDS:
                raise ValueError(f"services.{kind}: unknown kind; expected one of "
                                 f"{', '.join(KINDS)}")
            if _whole(f"services.{kind}", count):
                services[kind] = int(count)
        object.__setattr__(self, "services", services)

    def __hash__(self) -> int:
        return hash(tuple(self.items()))

    @classmethod
    def single(cls, resource: str, amount: float) -> Resources:
        """Only `amount` of `resource` (e.g. a quota exception of +2048 memory_mib)."""
        return cls().with_value(resource, amount)

    def get(self, resource: str) -> float:
        if resource.startswith("services."):
            kind = resource.split(".", 1)[1]
            if kind not in KINDS:
                raise KeyError(resource)
            return self.services.get(kind, 0)
        if resource not in _SCALARS:
            raise KeyError(resource)
        return getattr(self, resource)

    def with_value(self, resource: str, value: float) -> Resources:
        self.get(resource)  # KeyError for an unknown resource
        data = self.to_dict()
        if resource.startswith("services."):
            data["services"][resource.split(".", 1)[1]] = value
        else:
            data[resource] = value
        return Resources.from_dict(data)

    def items(self) -> list[tuple[str, float]]:
        """(resource, value) for every resource in RESOURCES order, zeros included."""
        return [(name, self.get(name)) for name in RESOURCES]

    def _combine(self, other: Resources, sign: int) -> Resources:
        if not isinstance(other, Resources):
            return NotImplemented
        values = {name: self.get(name) + sign * other.get(name) for name in RESOURCES}
        return Resources.from_flat(values)

    def __add__(self, other: Resources) -> Resources:
        return self._combine(other, 1)

    def __sub__(self, other: Resources) -> Resources:
        return self._combine(other, -1)

    def __le__(self, other: Resources) -> bool:
        """Fits: every resource is at most the other's (a partial order, like sets)."""
        if not isinstance(other, Resources):
            return NotImplemented
        return not self.exceeding(other)

    def __ge__(self, other: Resources) -> bool:
        if not isinstance(other, Resources):
            return NotImplemented
        return other <= self

    def exceeding(self, quota: Resources) -> list[str]:
        """Resources where self is above `quota`, in RESOURCES order."""
        return [name for name, value in self.items() if value > quota.get(name)]

    def positive(self) -> Resources:
        """Negative parts set to zero (a pending downsize frees nothing until it is applied)."""
        return Resources.from_flat({name: max(value, 0) for name, value in self.items()})

    def is_zero(self) -> bool:
        return all(value == 0 for _name, value in self.items())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict, shaped like a plan in plans.yaml."""
        return {"cpu": self.cpu, "memory_mib": self.memory_mib, "disk_mib": self.disk_mib,
                "services": {kind: self.services.get(kind, 0) for kind in KINDS},
                "mailboxes": self.mailboxes, "mail_storage_mib": self.mail_storage_mib}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Resources:
        """Inverse of to_dict; also accepts flat "services.<kind>" keys."""
        values = {key: value for key, value in data.items() if key != "services"}
        for kind, count in dict(data.get("services") or {}).items():
            values[f"services.{kind}"] = count
        return cls.from_flat(values)

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> Resources:
        services, scalars = {}, {}
        for key, value in values.items():
            if key.startswith("services."):
                services[key.split(".", 1)[1]] = value
            elif key in _SCALARS:
                scalars[key] = value
            else:
                raise ValueError(f"{key}: unknown resource; expected one of {', '.join(RESOURCES)}")
        return cls(services=services, **scalars)


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
