"""Decide a request: does it fit the quota, and which approval rule (approval.yaml) applies."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any, Iterable

from policies.model import KINDS, MAILBOX, REQUEST_KINDS, RESOURCES, ApprovalRule, Plan, Policies
from policies.reasons import Decision, Reason
from policies.resources import Resources, _field, demand_of, effective_quota


@dataclass(frozen=True)
class Facts:
    """What approval rules look at: the action, the kind, the size and the target resources."""

    action: str  # create | resize | quota_increase
    kind: str | None = None
    size: str | None = None
    resources: Resources = Resources()


def match_rule(rules: Iterable[ApprovalRule], facts: Facts) -> ApprovalRule:
    """The first rule whose every condition holds (approval.yaml ends with a catch-all)."""
    for rule in rules:
        if _matches(rule, facts):
            return rule
    raise LookupError("no approval rule matched; approval.yaml must end with a catch-all rule")


def _matches(rule: ApprovalRule, facts: Facts) -> bool:
    if rule.actions and facts.action not in rule.actions:
        return False
    service_conditions = rule.kinds or rule.sizes or rule.at_most or rule.above
    if facts.kind is None:  # a quota increase: only the action can match
        return not service_conditions
    if rule.kinds and facts.kind not in rule.kinds:
        return False
    if rule.sizes and facts.size not in rule.sizes:
        return False
    if rule.at_most and any(facts.resources.get(res) > limit
                            for res, limit in rule.at_most.items()):
        return False
    if rule.above and not any(facts.resources.get(res) > limit
                              for res, limit in rule.above.items()):
        return False
    return True


def _plan_reason(plan: Plan) -> dict[str, Any]:
    return {"plan": plan.name, "plan_title": dict(plan.title)}


def _request_problems(policies: Policies, request: Any) -> list[Reason]:
    """Refusals that do not depend on the quota: unknown kind or size, disabled kind, bad values."""
    kind = _field(request, "kind")
    if kind not in REQUEST_KINDS:
        return [Reason("unknown_kind", detail=str(kind), choices=REQUEST_KINDS)]
    resize = any(_field(request, f"current_{key}") is not None
                 for key in ("size", "resources", "mail_mib"))
    if kind != MAILBOX and not resize and not policies.kind_enabled(kind):
        return [Reason("kind_disabled", detail=kind, choices=tuple(policies.enabled_kinds()))]
    if kind == MAILBOX:
        limits = policies.mailbox
        mib = _field(request, "mail_mib")
        mib = limits.default_mib if mib is None else mib
        if (isinstance(mib, bool) or not isinstance(mib, (int, float)) or not math.isfinite(mib)
                or int(mib) != mib or not limits.min_mib <= mib <= limits.max_mib):
            return [Reason("mailbox_size", resource="mail_storage_mib", detail=str(mib),
                           requested=mib if isinstance(mib, (int, float)) and not
                           isinstance(mib, bool) and math.isfinite(mib) else None,
                           minimum=limits.min_mib, maximum=limits.max_mib)]
        return []
    problems = []
    for prefix in ("", "current_"):
        explicit = _field(request, f"{prefix}resources")
        size = _field(request, f"{prefix}size")
        if explicit is not None:
            problems += _explicit_problems(explicit)
        elif size is not None and size not in policies.size_names(kind):
            problems.append(Reason("unknown_size", resource=f"services.{kind}", detail=str(size),
                                   choices=tuple(policies.size_names(kind))))
        elif size is None and not prefix:
            problems.append(Reason("unknown_size", resource=f"services.{kind}", detail="",
                                   choices=tuple(policies.size_names(kind))))
    return problems


# Explicit container resources: the smallest sensible value of each (0 would mean "no limit"
# to Docker for cpu and memory, so they are required).
_EXPLICIT_MINIMUM = {"cpu": 0.01, "memory_mib": 16, "disk_mib": 0}


def _explicit_problems(explicit: Any) -> list[Reason]:
    if not hasattr(explicit, "items"):
        return [Reason("invalid_value", resource="resources", detail=repr(explicit))]
    problems = []
    for key in ("cpu", "memory_mib"):
        if key not in explicit:
            problems.append(Reason("invalid_value", resource=key, detail="",
                                   minimum=_EXPLICIT_MINIMUM[key]))
    for key, value in explicit.items():
        if key not in _EXPLICIT_MINIMUM:
            problems.append(Reason("unknown_resource", detail=str(key),
                                   choices=tuple(_EXPLICIT_MINIMUM)))
        elif (isinstance(value, bool) or not isinstance(value, (int, float))
              or not math.isfinite(value) or value < _EXPLICIT_MINIMUM[key]
              or (key != "cpu" and int(value) != value)):
            problems.append(Reason("invalid_value", resource=key, detail=repr(value),
                                   minimum=_EXPLICIT_MINIMUM[key]))
    return problems


def quota_reasons(plan: Plan, quota: Resources, allocated: Resources, needed: Resources,
                  code: str = "over_quota") -> list[Reason]:
    """One over_quota reason per resource the request adds to and that would overflow."""
    after = allocated + needed
    reasons = []
    for resource in RESOURCES:
        if needed.get(resource) > 0 and after.get(resource) > quota.get(resource):
            reasons.append(Reason(code, resource=resource, requested=needed.get(resource),
                                  remaining=max(quota.get(resource) - allocated.get(resource), 0),
                                  quota=quota.get(resource), **_plan_reason(plan)))
    return reasons


def check_request(policies: Policies, plan_name: str | Plan, allocated: Resources,
                  exceptions: Iterable[Any], request: Any, *,
                  today: date | None = None) -> Decision:
    """Decide a new service, mailbox or resize for an institution holding `allocated`.

    `allocated` must not include this request (call before recording it, or leave it out).
    `request`: mapping/object with `kind` and `size` | `resources` | `mail_mib`; a resize adds
    `current_size` | `current_resources` | `current_mail_mib`. `plan_name` may be an edited
    Plan (operators' overrides), as in check_plan_change.
    """
    plan = plan_name if isinstance(plan_name, Plan) else policies.plans.get(plan_name)
    if plan is None:
        return Decision.refuse([Reason("unknown_plan", plan=str(plan_name),
                                       choices=tuple(policies.plans))])
    problems = _request_problems(policies, request)
    if problems:
        return Decision.refuse(problems)
    target, current = demand_of(request, policies)
    needed = target if current is None else (target - current).positive()
    quota = effective_quota(plan, exceptions, today)
    over = quota_reasons(plan, quota, allocated, needed)
    if over:
        return Decision.refuse(over)
    kind = _field(request, "kind")
    facts = Facts(action="create" if current is None else "resize", kind=kind,
                  size=_field(request, "size") if kind in KINDS else None,
                  resources=target)
    rule = match_rule(policies.approval, facts)
    return Decision(allowed=True, automatic=rule.approvals == 0,
                    approvals_needed=rule.approvals, rule=rule.name)


def parse_amount(resource: str, amount: Any) -> tuple[float | None, Reason | None]:
    """Read an amount typed in a form ("1,5" or 1.5); returns (value, None) or (None, reason)."""
    value = amount
    if isinstance(amount, str):
        try:
            value = float(amount.strip().replace(",", ".").replace("\u202f", "").replace(" ", ""))
        except ValueError:
            return None, Reason("amount_not_positive", resource=resource, detail=amount)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None, Reason("amount_not_positive", resource=resource, detail=str(amount))
    if value <= 0:
        return None, Reason("amount_not_positive", resource=resource, detail=str(amount))
    if resource != "cpu" and int(value) != value:
        return None, Reason("amount_not_whole", resource=resource, detail=str(amount))
    if resource == "cpu" and round(value, 2) != value:
        return None, Reason("amount_not_whole", resource=resource, detail=str(amount))
    return (round(float(value), 2) if resource == "cpu" else int(value)), None


def check_quota_increase(policies: Policies, resource: str, amount: Any, justification: str, *,
                         ends_on: date | None = None, today: date | None = None) -> Decision:
    """Validate a request for more of one resource (an exception to the plan) and say who approves.

    The amount may be a number or the text typed in a form ("1,5"); CPU in cores (2 decimals),
    everything else whole (MiB or a count).
    """
    reasons: list[Reason] = []
    if resource not in RESOURCES:
        reasons.append(Reason("unknown_resource", detail=str(resource), choices=RESOURCES))
    else:
        value, problem = parse_amount(resource, amount)
        if problem is not None:
            reasons.append(problem)
        elif policies.exceptions is not None:
            limit = policies.exceptions.max_increase.get(resource)
            if value > limit:
                reasons.append(Reason("amount_too_large", resource=resource, requested=value,
                                      maximum=limit))
    text = (justification or "").strip()
    minimum = policies.exceptions.min_justification_chars if policies.exceptions else 1
    if not text:
        reasons.append(Reason("justification_missing", minimum=minimum))
    elif len(text) < minimum:
        reasons.append(Reason("justification_too_short", requested=len(text), minimum=minimum))
    if ends_on is not None and ends_on < (today or date.today()):
        reasons.append(Reason("ends_in_past", detail=ends_on.isoformat()))
    if reasons:
        return Decision.refuse(reasons)
    rule = match_rule(policies.approval, Facts(action="quota_increase"))
    return Decision(allowed=True, automatic=rule.approvals == 0, approvals_needed=rule.approvals,
                    rule=rule.name)
