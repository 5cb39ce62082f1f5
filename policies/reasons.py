"""What the evaluator answers: decisions with their reasons, and usage warnings, as plain data."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

# Reason codes. over_quota / over_plan carry the numbers; the others name what was wrong.
REASON_CODES = (
    "over_quota",        # a request does not fit in what is left of the effective quota
    "over_plan",         # a plan change (or an exception's end) leaves the allocation above it
    "unknown_plan", "unknown_kind", "kind_disabled", "unknown_size", "mailbox_size",
    "invalid_value",     # explicit resources that are not sensible numbers
    "unknown_resource", "amount_not_positive", "amount_not_whole", "amount_too_large",
    "justification_missing", "justification_too_short", "ends_in_past",
)


@dataclass(frozen=True)
class Reason:
    """Why something is refused; format it with policies.format_reason(reason, locale)."""

    code: str
    resource: str = ""
    requested: float | None = None  # asked for (over_quota) or allocated (over_plan)
    remaining: float | None = None  # left before the request (never below 0)
    quota: float | None = None  # the effective quota, exceptions included
    plan: str = ""
    plan_title: Mapping[str, str] = field(default_factory=dict)  # locale -> display name
    detail: str = ""  # the offending value as given (size name, kind, raw amount, date)
    choices: tuple[str, ...] = ()  # what would have been accepted
    minimum: float | None = None
    maximum: float | None = None

    def __hash__(self) -> int:
        return hash((self.code, self.resource, self.requested, self.plan, self.detail))

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that carry something, JSON-able."""
        out: dict[str, Any] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value in (None, "", (), {}):
                continue
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[spec.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reason:
        known = {spec.name for spec in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if "choices" in values:
            values["choices"] = tuple(values["choices"])
        if "plan_title" in values:
            values["plan_title"] = dict(values["plan_title"])
        return cls(**values)


@dataclass(frozen=True)
class Decision:
    """Whether a request may go ahead and how many different operators must approve it."""

    allowed: bool
    automatic: bool
    approvals_needed: int  # 0, 1 or 2
    rule: str  # the approval rule that matched ("" when refused)
    reasons: tuple[Reason, ...] = ()

    @classmethod
    def refuse(cls, reasons: list[Reason] | tuple[Reason, ...]) -> Decision:
        return cls(allowed=False, automatic=False, approvals_needed=0, rule="",
                   reasons=tuple(reasons))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict, to store with the request (Request.decision)."""
        return {"allowed": self.allowed, "automatic": self.automatic,
                "approvals_needed": self.approvals_needed, "rule": self.rule,
                "reasons": [reason.to_dict() for reason in self.reasons]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        return cls(allowed=bool(data["allowed"]), automatic=bool(data["automatic"]),
                   approvals_needed=int(data["approvals_needed"]), rule=str(data["rule"]),
                   reasons=tuple(Reason.from_dict(r) for r in data.get("reasons", ())))

    def approvals_missing(self, approvers: Any = (), requester: Any = None) -> int:
        """How many more different operators must approve, given who already did.

        The requester's own approval never counts (four eyes, even for an operator's request).
        """
        distinct = set(approvers) - ({requester} if requester is not None else set())
        return max(0, self.approvals_needed - len(distinct))


@dataclass(frozen=True)
class UsageWarning:
    """A resource whose use crossed its warning threshold (or its quota)."""

    resource: str
    used: float
    quota: float
    percent: float | None  # used / quota * 100, one decimal; None when the quota is 0
    threshold: int

    @property
    def over(self) -> bool:
        return self.used > self.quota

    def to_dict(self) -> dict[str, Any]:
        return {"resource": self.resource, "used": self.used, "quota": self.quota,
                "percent": self.percent, "threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UsageWarning:
        return cls(**{spec.name: data[spec.name] for spec in fields(cls)})
