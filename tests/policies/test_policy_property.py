"""Property: whatever happens through the evaluator, no institution holds more than its quota."""
from __future__ import annotations

import dataclasses
import json
from datetime import date, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import policies
from policies import KINDS, RESOURCES, Decision, Plan, Reason, Resources

TODAY = date(2026, 6, 1)
BASE = policies.load()
# A small plan so that sequences of a few dozen steps hit every limit.
TINY = Plan(name="tiny", title={"fr": "essai", "en": "trial"}, quota=Resources(
    cpu=1.5, memory_mib=1024, disk_mib=20480,
    services={"website": 2, "postgresql": 1, "mariadb": 1, "application": 1},
    mailboxes=3, mail_storage_mib=4096))
POL = dataclasses.replace(BASE, plans={**BASE.plans, "tiny": TINY})
PLAN_NAMES = sorted(POL.plans)
SERVICE_LIVE = ("provisioning", "running", "stopped", "failed", "deleting")
OPEN = ("submitted", "approved")

sizes = st.sampled_from(["S", "M", "L"])
service_requests = st.one_of(
    st.builds(lambda kind, size: {"kind": kind, "size": size}, st.sampled_from(KINDS), sizes),
    st.builds(lambda mib: {"kind": "mailbox", "mail_mib": mib},
              st.sampled_from([256, 1024, 2048, 4096, 10240])),
    st.builds(lambda cpu, mem, disk: {"kind": "application",
                                      "resources": {"cpu": cpu, "memory_mib": mem,
                                                    "disk_mib": disk}},
              st.sampled_from([0.1, 0.2, 0.3, 0.75]), st.integers(16, 700),
              st.integers(0, 3000)),
)
AMOUNTS = {"cpu": [0.25, 0.5, 1, 2.5], "memory_mib": [128, 512, 2048], "disk_mib": [1024, 8192],
           "mail_storage_mib": [512, 4096]}


def naive_holding(item: dict) -> dict[str, Decimal]:
    """An independent reading of what one item holds, in exact decimals."""
    def of(size=None, resources=None, mail_mib=None):
        out = dict.fromkeys(RESOURCES, Decimal(0))
        if item["kind"] == "mailbox":
            out["mailboxes"], out["mail_storage_mib"] = Decimal(1), Decimal(mail_mib)
            return out
        spec = resources or {k: getattr(POL.sizes[item["kind"]][size], k)
                             for k in ("cpu", "memory_mib", "disk_mib")}
        for key, value in spec.items():
            out[key] = Decimal(str(value))
        out[f"services.{item['kind']}"] = Decimal(1)
        return out

    target = of(item.get("size"), item.get("resources"), item.get("mail_mib"))
    if "current_size" in item or "current_mail_mib" in item:
        current = of(item.get("current_size"), None, item.get("current_mail_mib"))
        return {k: max(target[k] - current[k], Decimal(0)) for k in RESOURCES}
    return target


class Institution(RuleBasedStateMachine):
    """One institution: requests, services, mailboxes, resizes, plan changes, exceptions."""

    def __init__(self):
        super().__init__()
        self.pol = POL
        self.plan = "tiny"
        self.items: list[dict] = []
        self.exceptions: list[dict] = []

    @initialize(plan=st.sampled_from(["tiny", "tiny", *PLAN_NAMES]))
    def choose_plan(self, plan):
        self.plan = plan

    # -- helpers ----------------------------------------------------------------------------
    def allocated(self) -> Resources:
        return policies.allocation_of(self.items, self.pol)

    def pick(self, index: int, statuses, *, resize=None) -> dict | None:
        found = [i for i in self.items if i["status"] in statuses
                 and (resize is None or ("current_size" in i or "current_mail_mib" in i) == resize)]
        return found[index % len(found)] if found else None

    def apply_resize(self, req: dict) -> None:
        service = self.items[req["service"]]
        assert service["status"] in SERVICE_LIVE
        if "current_mail_mib" in req:
            service["mail_mib"] = req["mail_mib"]
        else:
            service["size"] = req["size"]
        req["status"] = "active"  # fulfilled: no longer counted

    # -- actions ----------------------------------------------------------------------------
    @rule(request=service_requests)
    def submit(self, request):
        decision = policies.check_request(self.pol, self.plan, self.allocated(), self.exceptions,
                                          request, today=TODAY)
        assert Decision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision
        if decision.allowed:
            status = "provisioning" if decision.automatic else "submitted"
            self.items.append({**request, "status": status, "approvals": [],
                               "decision": decision.to_dict()})
        else:
            assert all(r.code == "over_quota" for r in decision.reasons)
            for reason in decision.reasons:
                assert policies.format_reason(reason, "fr") and policies.format_reason(reason, "en")

    @rule(request=service_requests)
    def submit_more(self, request):
        """Submissions are the main way to fill a quota: make them twice as likely."""
        self.submit(request)

    @rule(index=st.integers(0, 99), operator=st.sampled_from(["op1", "op2"]))
    def approve(self, index, operator):
        req = self.pick(index, ("submitted",))
        if req is None:
            return
        resize = "current_size" in req or "current_mail_mib" in req
        # What it holds is reserved since submission: checked again without it, it still fits.
        again = policies.check_request(
            self.pol, self.plan, self.allocated() - policies.holding_of(req, self.pol),
            self.exceptions, req, today=TODAY)
        assert again.allowed, again.reasons
        if operator not in req["approvals"]:
            req["approvals"].append(operator)
        if Decision.from_dict(req["decision"]).approvals_missing(req["approvals"]) == 0:
            if resize:
                self.apply_resize(req)
            else:
                req["status"] = "provisioning"

    @rule(index=st.integers(0, 99))
    def reject(self, index):
        req = self.pick(index, ("submitted",))
        if req is not None:
            req["status"] = "rejected"

    @rule(index=st.integers(0, 99), outcome=st.sampled_from(["running", "failed", "stopped"]))
    def worker(self, index, outcome):
        svc = self.pick(index, ("provisioning", "running", "failed"), resize=False)
        if svc is not None:
            svc["status"] = outcome

    @rule(index=st.integers(0, 99), size=sizes, mib=st.sampled_from([256, 2048, 8192]))
    def resize(self, index, size, mib):
        svc = self.pick(index, ("running", "stopped"), resize=False)
        if svc is None or "resources" in svc:
            return
        position = self.items.index(svc)
        if any(i.get("service") == position and i["status"] in OPEN for i in self.items):
            return  # one open resize per service
        if svc["kind"] == "mailbox":
            request = {"kind": "mailbox", "mail_mib": mib, "current_mail_mib": svc["mail_mib"]}
        else:
            request = {"kind": svc["kind"], "size": size, "current_size": svc["size"]}
        decision = policies.check_request(self.pol, self.plan, self.allocated(), self.exceptions,
                                          request, today=TODAY)
        if decision.allowed:
            req = {**request, "status": "submitted", "service": position, "approvals": [],
                   "decision": decision.to_dict()}
            self.items.append(req)
            if decision.automatic:
                self.apply_resize(req)

    @rule(index=st.integers(0, 99))
    def delete(self, index):
        svc = self.pick(index, ("running", "stopped", "failed", "deleting"), resize=False)
        if svc is None:
            return
        svc["status"] = "deleted" if svc["status"] == "deleting" else "deleting"
        position = self.items.index(svc)
        for req in self.items:
            if req.get("service") == position and req["status"] in OPEN:
                req["status"] = "cancelled"

    @rule(name=st.sampled_from(PLAN_NAMES))
    def change_plan(self, name):
        if not policies.check_plan_change(self.pol, name, self.allocated(), self.exceptions,
                                          today=TODAY):
            self.plan = name

    @rule(resource=st.sampled_from(RESOURCES), factor=st.sampled_from([0, 0.5, 0.9]))
    def edit_plan(self, resource, factor):
        plan = self.pol.plan(self.plan)
        value = plan.quota.get(resource) * factor
        value = round(value, 2) if resource == "cpu" else int(value)
        edited = dataclasses.replace(plan, quota=plan.quota.with_value(resource, value))
        if not policies.check_plan_change(self.pol, edited, self.allocated(), self.exceptions,
                                          today=TODAY):
            self.pol = dataclasses.replace(self.pol, plans={**self.pol.plans, self.plan: edited})

    @rule(resource=st.sampled_from(RESOURCES), pick=st.integers(0, 3),
          days=st.sampled_from([None, -1, 0, 30]))
    def quota_exception(self, resource, pick, days):
        choices = AMOUNTS.get(resource, [1, 2])
        ends_on = None if days is None else TODAY + timedelta(days=days)
        decision = policies.check_quota_increase(self.pol, resource, choices[pick % len(choices)],
                                                 "Besoin justifié par la direction",
                                                 ends_on=ends_on, today=TODAY)
        assert decision.allowed == (days != -1)
        if decision.allowed:
            assert decision.approvals_needed == 2 and decision.approvals_missing(["op1"]) == 1
            self.exceptions.append({"resource": resource, "amount": choices[pick % len(choices)],
                                    "ends_on": ends_on, "revoked_at": None})

    @precondition(lambda self: self.exceptions)
    @rule(index=st.integers(0, 99))
    def revoke_exception(self, index):
        target = self.exceptions[index % len(self.exceptions)]
        remaining = [e for e in self.exceptions if e is not target]
        if not policies.check_plan_change(self.pol, self.plan, self.allocated(), remaining,
                                          today=TODAY):
            target["revoked_at"] = TODAY

    # -- the property -----------------------------------------------------------------------
    @invariant()
    def never_above_effective_quota(self):
        held = dict.fromkeys(RESOURCES, Decimal(0))
        for item in self.items:
            if item["status"] in ("submitted", "approved", "provisioning", *SERVICE_LIVE):
                for key, value in naive_holding(item).items():
                    held[key] += value
        quota = {k: Decimal(str(v)) for k, v in self.pol.plan(self.plan).quota.items()}
        for grant in self.exceptions:
            if grant["revoked_at"] is None and (grant["ends_on"] is None
                                                or grant["ends_on"] >= TODAY):
                quota[grant["resource"]] += Decimal(str(grant["amount"]))
        over = {k: (held[k], quota[k]) for k in RESOURCES if held[k] > quota[k]}
        assert not over, f"plan {self.plan}: held above quota {over}"
        computed = self.allocated()
        assert {k: Decimal(str(v)) for k, v in computed.items()} == held


Institution.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
TestInstitution = Institution.TestCase


resources = st.builds(
    Resources,
    cpu=st.integers(-4000, 4000).map(lambda m: m / 1000),
    memory_mib=st.integers(-10 ** 6, 10 ** 6), disk_mib=st.integers(-10 ** 7, 10 ** 7),
    services=st.dictionaries(st.sampled_from(KINDS), st.integers(-20, 20)),
    mailboxes=st.integers(-500, 500), mail_storage_mib=st.integers(-10 ** 6, 10 ** 6))


@settings(max_examples=200, deadline=None)
@given(a=resources, b=resources)
def test_resources_algebra(a, b):
    assert (a + b) - b == a
    assert a + b == b + a
    assert Resources.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    assert (a.positive() <= a.positive() + b.positive())
    assert (a <= b) == (not a.exceeding(b))


@settings(max_examples=200, deadline=None)
@given(resource=st.sampled_from(RESOURCES), requested=st.integers(1, 10 ** 7),
       remaining=st.integers(0, 10 ** 7), locale=st.sampled_from(["fr", "en", "rn", "en_US"]),
       plan=st.sampled_from(PLAN_NAMES))
def test_every_over_quota_reason_formats_and_round_trips(resource, requested, remaining,
                                                         locale, plan):
    value = requested / 100 if resource == "cpu" else requested
    title = POL.plan(plan).title
    reason = Reason("over_quota", resource=resource, requested=value, remaining=remaining,
                    quota=remaining + 1, plan=plan, plan_title=dict(title))
    text = policies.format_reason(reason, locale)
    assert title["en" if locale.startswith("en") else "fr"] in text
    assert Reason.from_dict(json.loads(json.dumps(reason.to_dict()))) == reason
