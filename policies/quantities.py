"""Quantities of capacity (CPU cores, MiB, counts) and how to add and compare them.

It depends only on the vocabulary, so the rules (policies.model) and the counting
(policies.resources) can both use it without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from policies.vocabulary import KINDS, RESOURCES

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
