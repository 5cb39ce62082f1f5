"""Rules as data: sizes, plans, approval, catalogue, naming; loaded from YAML, checked at start.

Everything here is pure (no Flask, no database): the app passes plain records in and stores
the plain answers (Decision.to_dict) it gets back.

    pol = policies.load()
    used = policies.allocation_of(items, pol)
    decision = policies.check_request(pol, "ministry", used, grants,
                                      {"kind": "website", "size": "M"})
"""
from __future__ import annotations

from policies.approval import Facts, check_quota_increase, check_request, match_rule, parse_amount
from policies.loader import POLICIES_DIR, load, parse_plans, parse_sizes
from policies.messages import (format_number, format_quantity, format_reason, format_warning,
    resource_label)
from policies.model import (ACTIONS, KINDS, MAILBOX, REQUEST_KINDS, REQUEST_RESOURCES, RESOURCES,
    ApprovalRule, ExceptionRules, KindEntry, MailboxLimits, NameRule, Plan, Policies, PolicyError,
    Size)
from policies.naming import (HOSTNAME_RE, hostname_problem, image_problem, name_problem,
    version_problem)
from policies.quota import check_plan_change, warnings
from policies.reasons import REASON_CODES, Decision, Reason, UsageWarning
from policies.resources import (COUNTED_STATUSES, Resources, allocation_of, counts, demand_of,
    effective_quota, exception_active, holding_of)

__all__ = [
    "ACTIONS", "COUNTED_STATUSES", "HOSTNAME_RE", "KINDS", "MAILBOX", "POLICIES_DIR",
    "REASON_CODES", "REQUEST_KINDS", "REQUEST_RESOURCES", "RESOURCES",
    "ApprovalRule", "Decision", "ExceptionRules", "Facts", "KindEntry", "MailboxLimits",
    "NameRule", "Plan", "Policies", "PolicyError", "Reason", "Resources", "Size", "UsageWarning",
    "allocation_of", "check_plan_change", "check_quota_increase", "check_request", "counts",
    "demand_of", "effective_quota", "exception_active", "format_number", "format_quantity",
    "format_reason", "format_warning", "holding_of", "hostname_problem", "image_problem", "load",
    "match_rule", "name_problem", "parse_amount", "parse_plans", "parse_sizes", "resource_label",
    "version_problem", "warnings",
]

from policies.retention import Retention, load_retention  # noqa: E402
