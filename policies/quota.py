"""Plan changes and usage warnings: what would be over, and what is getting close to full."""
from __future__ import annotations

from datetime import date
from typing import Any, Iterable, Mapping

from policies.model import RESOURCES, Plan, Policies
from policies.reasons import Reason, UsageWarning
from policies.resources import Resources, effective_quota


def check_plan_change(policies: Policies, new_plan: str | Plan, allocated: Resources,
                      exceptions: Iterable[Any] = (), *, today: date | None = None
                      ) -> list[Reason]:
    """What the institution holds beyond the new plan (empty = the change is possible).

    `new_plan` is a plan name or an edited Plan. Pass the exceptions that would remain to check
    the revocation of an exception the same way (same plan, one exception fewer).
    """
    if isinstance(new_plan, str):
        plan = policies.plans.get(new_plan)
        if plan is None:
            return [Reason("unknown_plan", plan=new_plan, choices=tuple(policies.plans))]
    else:
        plan = new_plan
    quota = effective_quota(plan, exceptions, today)
    return [Reason("over_plan", resource=resource, requested=allocated.get(resource),
                   remaining=max(quota.get(resource) - allocated.get(resource), 0),
                   quota=quota.get(resource), plan=plan.name, plan_title=dict(plan.title))
            for resource in allocated.exceeding(quota)]


def warnings(usage: Resources, quota: Resources, thresholds: Mapping[str, int]
             ) -> list[UsageWarning]:
    """Resources whose use reached their threshold percent of the quota (warning_threshold).

    `usage` may be the allocation or measured use (disk, mail storage), as Resources.
    """
    found = []
    for resource in RESOURCES:
        threshold = thresholds.get(resource)
        if threshold is None:
            continue
        used, limit = usage.get(resource), quota.get(resource)
        if limit > 0 and used * 100 >= threshold * limit:
            found.append(UsageWarning(resource, used, limit, round(used * 100 / limit, 1),
                                      threshold))
        elif limit <= 0 and used > 0:
            found.append(UsageWarning(resource, used, limit, None, threshold))
    return found
