"""Plans, approval, catalogue and naming: loading, exact error messages, every decision path."""
from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import date
from types import SimpleNamespace

import pytest

import policies
from policies import Decision, Reason, Resources

TODAY = date(2026, 6, 1)
POL = policies.load()


def decide(request, used=Resources(), plan="ministry", exceptions=()):
    return policies.check_request(POL, plan, used, exceptions, request, today=TODAY)


# --- loading -------------------------------------------------------------------------------

def test_default_rules_load():
    assert policies.KINDS == ("website", "postgresql", "mariadb", "application")
    assert set(POL.plans) >= {"ministry", "hospital", "agency", "presidency"}
    assert POL.plan("ministry").display("fr") == "ministère"
    assert POL.plan("ministry").display("en_GB") == "ministry"
    assert POL.plan("ministry").quota.memory_mib == 8192
    assert POL.mailbox == policies.MailboxLimits(min_mib=256, max_mib=10240, default_mib=1024)
    assert POL.warning_threshold["disk_mib"] == 90
    assert POL.image("website") == "comgov/nginx:bookworm"
    assert POL.catalogue["postgresql"].versions == ("15",)
    assert POL.enabled_kinds() == list(policies.KINDS)
    assert [rule.name for rule in POL.approval][0] == "plan-exception"
    assert POL.approval[-1].catch_all
    for kind in policies.KINDS:
        assert POL.size_names(kind) == ["S", "M", "L"]


def _variant(tmp_path, filename, old, new):
    for path in policies.POLICIES_DIR.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    target = tmp_path / filename
    text = target.read_text(encoding="utf-8")
    assert old in text, f"test is stale: {old!r} not in {filename}"
    target.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(policies.PolicyError) as info:
        policies.load(tmp_path)
    return str(info.value)


MALFORMED = [
    ("plans.yaml", "memory_mib: 8192 ", "memory_mib: -5 ",
     "plans.yaml: plans.ministry.memory_mib: expected a whole number >= 0, got -5"),
    ("plans.yaml", "memory_mib: 8192 ", "memory_mib: 8192.5 ",
     "plans.yaml: plans.ministry.memory_mib: expected a whole number >= 0, got 8192.5"),
    ("plans.yaml", "cpu: 4\n", "cpu: -1\n",
     "plans.yaml: plans.ministry.cpu: expected a number >= 0 with at most 2 decimals, got -1"),
    ("plans.yaml", "cpu: 4\n", "cpu: four\n",
     "plans.yaml: plans.ministry.cpu: expected a number >= 0 with at most 2 decimals, "
     "got 'four'"),
    ("plans.yaml", "    mailboxes: 300\n", "    mailboxes: 300\n    gpu: 1\n",
     "plans.yaml: plans.ministry.gpu: unknown field; expected one of title, cpu, memory_mib, "
     "disk_mib, services, mailboxes, mail_storage_mib"),
    ("plans.yaml", "    mailboxes: 300\n", "", "plans.yaml: plans.ministry.mailboxes: missing"),
    ("plans.yaml", "application: 2}", "application: 2, spaceship: 1}",
     "plans.yaml: plans.ministry.services.spaceship: unknown kind; expected one of website, "
     "postgresql, mariadb, application"),
    ("plans.yaml", "mariadb: 2, application: 2}", "mariadb: 2}",
     "plans.yaml: plans.ministry.services.application: missing"),
    ("plans.yaml", "{fr: ministère, en: ministry}", "{fr: ministère}",
     "plans.yaml: plans.ministry.title.en: missing"),
    ("plans.yaml", "  ministry:\n", "  Ministry:\n",
     "plans.yaml: plans.Ministry: plan names are 2-32 lower-case letters, digits, - or _"),
    ("plans.yaml", "  disk_mib: 90\n", "  disk_mib: 150\n",
     "plans.yaml: warning_threshold.disk_mib: expected a whole number between 1 and 100, "
     "got 150"),
    ("plans.yaml", "  disk_mib: 90\n", "  disk: 90\n",
     "plans.yaml: warning_threshold.disk: unknown resource; expected one of cpu, memory_mib, "
     "disk_mib, services.website, services.postgresql, services.mariadb, "
     "services.application, mailboxes, mail_storage_mib"),
    ("plans.yaml", "    cpu: 16\n", "", "plans.yaml: exceptions.max_increase.cpu: missing"),
    ("plans.yaml", "plans:\n", "exceptionz: 1\nplans:\n",
     "plans.yaml: exceptionz: unknown field; expected one of plans, warning_threshold, exceptions"),
    ("sizes.yaml", "default_mib: 1024}", "default_mib: 20000}",
     "sizes.yaml: mailbox.default_mib: expected a whole number between 256 and 10240, "
     "got 20000"),
    ("sizes.yaml", "mailbox: {min_mib: 256, max_mib: 10240, default_mib: 1024}", "",
     "sizes.yaml: mailbox: missing; expected min_mib, max_mib and default_mib"),
    ("approval.yaml", "    approvals: 2\n\n  - name: mailbox",
     "    approvals: 3\n\n  - name: mailbox",
     "approval.yaml: rules[1].approvals: expected a whole number between 0 and 2, got 3"),
    ("approval.yaml", "when: {kinds: [mailbox]}", "when: {kinds: [spaceship]}",
     "approval.yaml: rules[2].when.kinds[0]: expected one of website, postgresql, mariadb, "
     "application, mailbox, got 'spaceship'"),
    ("approval.yaml", "when: {sizes: [S]}", "when: {sizes: [XL]}",
     "approval.yaml: rules[4].when.sizes[0]: expected one of L, M, S, got 'XL'"),
    ("approval.yaml", "when: {sizes: [S]}", "when: {colour: [S]}",
     "approval.yaml: rules[4].when.colour: unknown condition; expected one of action, kinds, "
     "sizes, at_most, above"),
    ("approval.yaml", "{at_most: {cpu: 0.5, memory_mib: 256}}", "{at_most: {cpu: 0.5, pids: 9}}",
     "approval.yaml: rules[5].when.at_most.pids: unknown resource; expected one of cpu, "
     "memory_mib, disk_mib, mail_storage_mib"),
    ("approval.yaml", "  - name: small-size", "  - name: large",
     "approval.yaml: rules[4].name: already used by another rule, got 'large'"),
    ("approval.yaml", "when: {action: [quota_increase]}\n    approvals: 2",
     "when: {action: [quota_increase]}\n    approvals: 1",
     "approval.yaml: rules[0].approvals: the first rule matching a quota_increase must need 2 "
     "approvals (an exception to the plan), got 1"),
    ("approval.yaml", "when: {action: [quota_increase]}", "when: {action: [quota_increase], "
     "kinds: [website]}", "approval.yaml: rules[0].when: a rule for quota_increase can only "
     "test action (kinds, sizes and thresholds describe services)"),
    ("approval.yaml", "inside the plan needs one operator.\n",
     "inside the plan needs one operator.\n    when: {kinds: [website]}\n",
     "approval.yaml: rules[6].when: the last rule must have no conditions, so that every "
     "request matches a rule"),
    ("catalogue.yaml", 'versions: ["15"]', "versions: [15]",
     'catalogue.yaml: kinds.postgresql.versions[0]: expected a version written as quoted text '
     '("15"), got 15'),
    ("catalogue.yaml", 'default_version: "15"', 'default_version: "16"',
     "catalogue.yaml: kinds.postgresql.default_version: expected one of versions (15), got '16'"),
    ("catalogue.yaml", "  mariadb:\n    enabled: true\n", "  mariadb:\n    enabled: maybe\n",
     "catalogue.yaml: kinds.mariadb.enabled: expected true or false, got 'maybe'"),
    ("catalogue.yaml", "      - registry.dc.gov.bi/", "      - registry.dc.gov.bi",
     "catalogue.yaml: kinds.application.registries[0]: expected a registry prefix ending with / "
     "(registry.dc.gov.bi/), got 'registry.dc.gov.bi'"),
    ("catalogue.yaml", "image: comgov/nginx:bookworm", "image: Comgov/Nginx",
     "catalogue.yaml: kinds.website.image: expected an image reference like "
     "comgov/nginx:bookworm, got 'Comgov/Nginx'"),
    ("naming.yaml", "pattern: '[a-z][a-z0-9_]{2,30}'", "pattern: '[a-z'",
     "naming.yaml: database.pattern: not a valid regular expression (unterminated character set "
     "at position 0), got '[a-z'"),
    ("naming.yaml", "  max_length: 64\n", "  max_length: 0\n",
     "naming.yaml: mailbox.max_length: expected a whole number between 1 and 255, got 0"),
]


@pytest.mark.parametrize("filename, old, new, message", MALFORMED,
                         ids=[m[3].split(": ", 2)[1] for m in MALFORMED])
def test_malformed_rule_files_are_named_exactly(tmp_path, filename, old, new, message):
    assert _variant(tmp_path, filename, old, new) == message


def test_duplicate_keys_and_missing_files_are_named(tmp_path):
    message = _variant(tmp_path, "plans.yaml", "  hospital:\n", "  ministry:\n")
    assert message.startswith("plans.yaml: not valid YAML (")
    assert "duplicate key 'ministry'" in message
    (tmp_path / "catalogue.yaml").unlink()
    (tmp_path / "plans.yaml").write_text((policies.POLICIES_DIR / "plans.yaml").read_text())
    with pytest.raises(policies.PolicyError, match="^catalogue.yaml: file is missing from "):
        policies.load(tmp_path)


# --- decisions -----------------------------------------------------------------------------

@pytest.mark.parametrize("request_, rule, approvals", [
    ({"kind": "website", "size": "S"}, "small-size", 0),
    ({"kind": "website", "size": "M"}, "small-resources", 0),  # 0.5 core, 128 MiB
    ({"kind": "website", "size": "L"}, "operator", 1),
    ({"kind": "postgresql", "size": "M"}, "operator", 1),
    ({"kind": "postgresql", "size": "L"}, "large", 2),
    ({"kind": "mariadb", "size": "S"}, "small-size", 0),
    ({"kind": "application", "size": "S"}, "application-review", 1),
    ({"kind": "application", "resources": {"cpu": 1.5, "memory_mib": 512}}, "large", 2),
    ({"kind": "mailbox", "mail_mib": 2048}, "mailbox", 0),
    ({"kind": "mailbox"}, "mailbox", 0),  # default size
    ({"kind": "website", "size": "L", "current_size": "S"}, "operator", 1),
    ({"kind": "postgresql", "size": "S", "current_size": "L"}, "small-size", 0),
])
def test_allowed_requests_follow_the_first_matching_rule(request_, rule, approvals):
    decision = decide(request_)
    assert decision == Decision(allowed=True, automatic=approvals == 0,
                                approvals_needed=approvals, rule=rule)


def test_over_quota_names_each_resource_with_numbers():
    used = Resources(cpu=3.5, memory_mib=8192 - 1536)
    decision = decide({"kind": "application", "resources": {"cpu": 1, "memory_mib": 4096}}, used)
    assert not decision.allowed and not decision.automatic and decision.rule == ""
    cpu, memory = decision.reasons
    assert (memory.code, memory.resource, memory.requested, memory.remaining, memory.quota,
            memory.plan) == ("over_quota", "memory_mib", 4096, 1536, 8192, "ministry")
    assert policies.format_reason(memory, "fr") == \
        "mémoire : 4 Gio demandés, 1,5 Gio restant sur 8 Gio (plan « ministère »)"
    assert policies.format_reason(memory, "en") == \
        "memory: 4 GiB requested, 1.5 GiB left of 8 GiB (plan “ministry”)"
    assert policies.format_reason(cpu, "fr") == \
        "processeur : 1 cœur demandé, 0,5 cœur restant sur 4 cœurs (plan « ministère »)"
    assert policies.format_reason(cpu, "en") == \
        "CPU: 1 core requested, 0.5 cores left of 4 cores (plan “ministry”)"


def test_counts_are_plain_numbers_and_full_quota_shows_zero_left():
    used = Resources(services={"website": 5})
    (reason,) = decide({"kind": "website", "size": "S"}, used).reasons
    assert policies.format_reason(reason, "fr") == \
        "sites web : 1 demandé, 0 restant sur 5 (plan « ministère »)"
    assert policies.format_reason(reason, "en") == \
        "websites: 1 requested, 0 left of 5 (plan “ministry”)"
    used = Resources(mailboxes=150, mail_storage_mib=153600 - 512)
    reasons = decide({"kind": "mailbox", "mail_mib": 2048}, used, plan="agency").reasons
    assert [policies.format_reason(r, "fr") for r in reasons] == [
        "boîtes aux lettres : 1 demandée, 0 restante sur 150 (plan « agence »)",
        "stockage du courrier : 2 Gio demandés, 512 Mio restants sur 150 Gio (plan « agence »)"]


def test_exceptions_extend_the_plan_until_they_end_or_are_revoked():
    used = Resources(services={"website": 5})
    request = {"kind": "website", "size": "S"}
    grant = {"resource": "services.website", "amount": 1.0, "ends_on": date(2026, 12, 31)}
    assert decide(request, used, exceptions=[grant]).allowed
    assert not decide(request, used, exceptions=[{**grant, "ends_on": date(2026, 5, 31)}]).allowed
    assert decide(request, used, exceptions=[{**grant, "ends_on": TODAY}]).allowed
    assert not decide(request, used, exceptions=[{**grant, "revoked_at": TODAY}]).allowed
    assert not decide(request, used, exceptions=[{**grant, "status": "submitted"}]).allowed
    row = SimpleNamespace(resource="services.website", amount=2.0, ends_on=None, revoked_at=None)
    quota = policies.effective_quota(POL.plan("ministry"), [row], TODAY)
    assert quota.services["website"] == 7 and quota.cpu == 4
    (reason,) = decide({"kind": "website", "size": "S"}, Resources(services={"website": 7}),
                       exceptions=[row]).reasons
    assert reason.quota == 7


def test_resize_reserves_only_the_increase():
    used = Resources(cpu=3.25, memory_mib=1000, services={"website": 1})
    assert decide({"kind": "website", "size": "L", "current_size": "S"}, used).allowed  # +0.75
    (reason,) = decide({"kind": "postgresql", "size": "L", "current_size": "M"}, used).reasons
    assert (reason.resource, reason.requested, reason.remaining) == ("cpu", 1.0, 0.75)
    assert decide({"kind": "postgresql", "size": "S", "current_size": "L"},
                  Resources(cpu=9)).allowed  # shrinking is always possible


@pytest.mark.parametrize("request_, plan, code, fr", [
    ({"kind": "spaceship"}, "ministry", "unknown_kind",
     "type de service « spaceship » inconnu ; types possibles : website, postgresql, mariadb, "
     "application, mailbox"),
    ({"kind": "website", "size": "XL"}, "ministry", "unknown_size",
     "taille « XL » inconnue pour website ; tailles possibles : S, M, L"),
    ({"kind": "website"}, "ministry", "unknown_size",
     "aucune taille choisie pour website ; tailles possibles : S, M, L"),
    ({"kind": "website", "size": "S"}, "club", "unknown_plan",
     "plan « club » inconnu ; plans possibles : ministry, hospital, agency, presidency"),
    ({"kind": "mailbox", "mail_mib": 20480}, "ministry", "mailbox_size",
     "taille de boîte aux lettres : 20 Gio demandés, à choisir entre 256 Mio et 10 Gio"),
    ({"kind": "application", "resources": {"cpu": 1, "memory_mib": -5}}, "ministry",
     "invalid_value", "mémoire : valeur invalide « -5 » (au moins 16 Mio)"),
    ({"kind": "application", "resources": {"memory_mib": 64}}, "ministry",
     "invalid_value", "processeur : valeur manquante (au moins 0,01 cœur)"),
    ({"kind": "mailbox", "mail_mib": float("inf")}, "ministry", "mailbox_size",
     "taille de boîte aux lettres : « inf » reçu, à choisir entre 256 Mio et 10 Gio"),
])
def test_malformed_requests_are_refused_with_a_reason(request_, plan, code, fr):
    decision = decide(request_, plan=plan)
    assert not decision.allowed
    assert [r.code for r in decision.reasons] == [code]
    assert policies.format_reason(decision.reasons[0], "fr") == fr


def test_disabled_kind_refuses_new_services_but_not_resizes():
    entry = dataclasses.replace(POL.catalogue["mariadb"], enabled=False)
    pol = dataclasses.replace(POL, catalogue={**POL.catalogue, "mariadb": entry})
    decision = policies.check_request(pol, "ministry", Resources(), [],
                                      {"kind": "mariadb", "size": "S"}, today=TODAY)
    assert [r.code for r in decision.reasons] == ["kind_disabled"]
    assert policies.format_reason(decision.reasons[0], "en") == \
        "“mariadb” services cannot be requested at the moment"
    assert policies.check_request(pol, "ministry", Resources(), [],
                                  {"kind": "mariadb", "size": "M", "current_size": "S"}).allowed


def test_decision_round_trips_through_json():
    decision = decide({"kind": "postgresql", "size": "L"}, Resources(cpu=3.5, memory_mib=7000))
    stored = json.loads(json.dumps(decision.to_dict()))
    assert stored["reasons"][0]["plan_title"] == {"fr": "ministère", "en": "ministry"}
    assert Decision.from_dict(stored) == decision
    ok = decide({"kind": "website", "size": "S"})
    assert Decision.from_dict(json.loads(json.dumps(ok.to_dict()))) == ok
    assert ok.to_dict() == {"allowed": True, "automatic": True, "approvals_needed": 0,
                            "rule": "small-size", "reasons": []}


def test_approvals_missing_counts_different_operators():
    decision = policies.check_quota_increase(POL, "cpu", 2, "Plateforme régionale de santé")
    assert decision.approvals_needed == 2 and decision.rule == "plan-exception"
    assert decision.approvals_missing([]) == 2
    assert decision.approvals_missing([7, 7]) == 1
    assert decision.approvals_missing([7, 9]) == 0
    assert decision.approvals_missing([7, 9], requester=9) == 1


@pytest.mark.parametrize("resource, amount, justification, ends_on, fr", [
    ("gpu", 1, "Calcul pour la cartographie", None,
     "ressource « gpu » inconnue ; ressources possibles : cpu, memory_mib, disk_mib, "
     "services.website, services.postgresql, services.mariadb, services.application, "
     "mailboxes, mail_storage_mib"),
    ("memory_mib", 0, "Nouvelle plateforme de données", None,
     "mémoire : la quantité doit être un nombre supérieur à zéro, « 0 » reçu"),
    ("memory_mib", "-2048", "Nouvelle plateforme de données", None,
     "mémoire : la quantité doit être un nombre supérieur à zéro, « -2048 » reçu"),
    ("cpu", "beaucoup", "Nouvelle plateforme de données", None,
     "processeur : la quantité doit être un nombre supérieur à zéro, « beaucoup » reçu"),
    ("mailboxes", 2.5, "Recrutement de 200 agents", None,
     "boîtes aux lettres : la quantité doit être un nombre entier, « 2.5 » reçu"),
    ("disk_mib", 10 ** 9, "Archives numérisées de l'état civil", None,
     "disque : 953,67 Tio demandés, au plus 2 Tio par exception"),
    ("cpu", 2, "   ", None,
     "justification : expliquez pourquoi cette augmentation est nécessaire"),
    ("cpu", 2, "urgent", None, "justification : au moins 20 caractères (6 reçus)"),
    ("cpu", 2, "Campagne de vaccination nationale", date(2026, 5, 1),
     "date de fin : le 2026-05-01 est déjà passé"),
])
def test_quota_increase_validation(resource, amount, justification, ends_on, fr):
    decision = policies.check_quota_increase(POL, resource, amount, justification,
                                             ends_on=ends_on, today=TODAY)
    assert not decision.allowed
    assert [policies.format_reason(r, "fr") for r in decision.reasons] == [fr]


def test_quota_increase_accepts_form_text_and_needs_two_operators():
    for amount in ("1,5", 1.5, "1.5"):
        decision = policies.check_quota_increase(POL, "cpu", amount, "Campagne de vaccination",
                                                 ends_on=date(2026, 9, 30), today=TODAY)
        assert (decision.allowed, decision.automatic, decision.approvals_needed, decision.rule) \
            == (True, False, 2, "plan-exception")
    assert policies.parse_amount("memory_mib", "2048") == (2048, None)


def test_plan_change_lists_what_would_be_over():
    used = Resources(cpu=3, memory_mib=4096, services={"website": 4, "application": 1})
    assert policies.check_plan_change(POL, "presidency", used) == []
    reasons = policies.check_plan_change(POL, "agency", used)
    assert [(r.code, r.resource, r.requested, r.quota) for r in reasons] == [
        ("over_plan", "cpu", 3, 2), ("over_plan", "services.website", 4, 3)]
    assert [policies.format_reason(r, "fr") for r in reasons] == [
        "processeur : 3 cœurs alloués, le plan « agence » n'en permet que 2 cœurs",
        "sites web : 4 alloués, le plan « agence » n'en permet que 3"]
    assert policies.format_reason(reasons[0], "en") == \
        "CPU: 3 cores allocated, plan “agency” allows only 2 cores"
    grant = {"resource": "cpu", "amount": 1, "ends_on": None}
    grant2 = {"resource": "services.website", "amount": 1, "ends_on": None}
    assert policies.check_plan_change(POL, "agency", used, [grant, grant2], today=TODAY) == []
    # Revoking an exception is checked the same way: same plan, the remaining exceptions.
    assert [r.resource for r in policies.check_plan_change(POL, "agency", used, [grant])] == \
        ["services.website"]
    edited = dataclasses.replace(POL.plan("ministry"),
                                 quota=POL.plan("ministry").quota.with_value("memory_mib", 2048))
    assert [r.resource for r in policies.check_plan_change(POL, edited, used)] == ["memory_mib"]
    assert [r.code for r in policies.check_plan_change(POL, "club", used)] == ["unknown_plan"]


def test_warnings_when_use_crosses_the_threshold():
    quota = POL.plan("ministry").quota
    usage = Resources(disk_mib=92160, mail_storage_mib=1000, memory_mib=8192)
    found = policies.warnings(usage, quota, POL.warning_threshold)
    assert [(w.resource, w.percent) for w in found] == [("memory_mib", 100.0), ("disk_mib", 90.0)]
    assert policies.format_warning(found[1], "fr") == \
        "disque : 90 Gio utilisés sur 100 Gio (90 %), seuil d’alerte 90 %"
    assert policies.format_warning(found[1], "en") == \
        "disk: 90 GiB used of 100 GiB (90%), warning threshold 90%"
    assert policies.warnings(Resources(disk_mib=92159), quota, {"disk_mib": 90}) == []
    (none_left,) = policies.warnings(Resources(disk_mib=5), quota.with_value("disk_mib", 0),
                                     {"disk_mib": 90})
    assert none_left.percent is None and none_left.over
    assert policies.format_warning(none_left, "en") == "disk: 5 MiB used, quota 0 MiB (exceeded)"
    assert policies.UsageWarning.from_dict(found[0].to_dict()) == found[0]


def test_allocation_counts_what_holds_capacity():
    items = [
        {"kind": "website", "size": "S", "status": "running"},
        {"kind": "website", "size": "M", "status": "submitted"},
        {"kind": "website", "size": "L", "status": "deleted"},
        {"kind": "website", "size": "L", "status": "rejected"},
        {"kind": "website", "size": "L", "status": "active"},  # fulfilled: its service counts
        {"kind": "postgresql", "size": "L", "current_size": "S", "status": "submitted"},
        {"kind": "postgresql", "size": "S", "current_size": "L", "status": "submitted"},
        SimpleNamespace(kind="mailbox", mail_mib=2048, status=None),
        {"kind": "application", "resources": {"cpu": 0.1, "memory_mib": 100}, "status": "failed"},
    ]
    total = policies.allocation_of(items, POL)
    assert total == Resources(cpu=0.25 + 0.5 + 1.5 + 0.1, memory_mib=64 + 128 + 1792 + 100,
                              disk_mib=256 + 1024 + 49152,
                              services={"website": 2, "application": 1},
                              mailboxes=1, mail_storage_mib=2048)
    with pytest.raises(ValueError, match="size 'XL' is unknown"):
        policies.allocation_of([{"kind": "website", "size": "XL"}], POL)


def test_resources_arithmetic():
    a = Resources(cpu=0.1, memory_mib=64, services={"website": 1})
    b = Resources(cpu=0.2, mailboxes=2)
    assert (a + b).cpu == 0.3 and (a + b) - b == a
    assert a <= a + b and not a + b <= a and a + b >= b
    assert (b - a).positive() == Resources(cpu=0.1, mailboxes=2)
    assert Resources.from_dict(a.to_dict()) == a
    assert hash(a) == hash(Resources.from_dict(a.to_dict()))
    assert Resources.single("services.mariadb", 2).get("services.mariadb") == 2
    assert a.exceeding(Resources(cpu=1)) == ["memory_mib", "services.website"]
    with pytest.raises(ValueError, match="unknown resource"):
        Resources.from_flat({"gpu": 1})


@pytest.mark.parametrize("resource, value, fr, en", [
    ("memory_mib", 512, "512 Mio", "512 MiB"),
    ("memory_mib", 1024, "1 Gio", "1 GiB"),
    ("disk_mib", 1100, "1,07 Gio", "1.07 GiB"),
    ("disk_mib", 3 * 1024 * 1024, "3 Tio", "3 TiB"),
    ("cpu", 0.25, "0,25 cœur", "0.25 cores"),
    ("cpu", 1, "1 cœur", "1 core"),
    ("mailboxes", 12000, "12\u202f000", "12,000"),
])
def test_quantities(resource, value, fr, en):
    assert policies.format_quantity(resource, value, "fr") == fr
    assert policies.format_quantity(resource, value, "en") == en


def test_unknown_locale_falls_back_to_french():
    reason = Reason("justification_missing")
    assert policies.format_reason(reason, "rn") == policies.format_reason(reason, "fr_BI")


@pytest.mark.parametrize("what, name, problem", [
    ("database", "sante_rh", None), ("database", "Sante", "syntax"), ("database", "db", "syntax"),
    ("database", "postgres", "reserved"), ("database", "template0", "reserved"),
    ("database", "a" * 32, "too_long"), ("mailbox", "jean.niyonzima", None),
    ("mailbox", "jean..n", "syntax"), ("mailbox", "Postmaster", "syntax"),
    ("mailbox", "postmaster", "reserved"), ("application", "dossier-patient", None),
    ("application", "proxy", "reserved"), ("application", "-x1", "syntax"),
])
def test_names(what, name, problem):
    assert policies.name_problem(POL, what, name) == problem


@pytest.mark.parametrize("image, problem", [
    ("registry.dc.gov.bi/minisante/dossier:1.4.2", None),
    ("registry.dc.gov.bi/app@sha256:" + "a" * 64, None),
    ("registry.dc.gov.bi/app", "untagged"), ("registry.dc.gov.bi/app:latest", "untagged"),
    ("registry.dc.gov.bi.evil.com/app:1", "not_allowed"),
    ("docker.io/library/redis:7", "not_allowed"),
    ("registry.dc.gov.bi/../app:1", "syntax"), ("registry.dc.gov.bi/App:1", "syntax"),
    ("registry.dc.gov.bi/app:1 --privileged", "syntax"),
])
def test_application_images(image, problem):
    assert policies.image_problem(POL, image) == problem


def test_versions_and_reserved_host_names():
    assert policies.version_problem(POL, "postgresql", "15") is None
    assert policies.version_problem(POL, "postgresql", None) is None
    assert policies.version_problem(POL, "postgresql", "9.6") == "unknown"
    assert POL.hostname_problem("mail.minisante.gov.bi", "minisante.gov.bi") == "reserved"
    assert POL.hostname_problem("mail.rh.minisante.gov.bi", "minisante.gov.bi") is None
    assert POL.hostname_problem("www.obr.gov.bi", "minisante.gov.bi") == "outside"


def test_policy_check_prints_plans_and_kinds():
    from click.testing import CliRunner

    from controlplane.cli import main

    result = CliRunner().invoke(main, ["policy", "check"])
    assert result.exit_code == 0, result.output
    assert "postgresql: sizes S, M, L; enabled; comgov/postgres:bookworm" in result.output
    assert "plan ministry (ministry): cpu 4, memory 8192 MiB" in result.output
    assert "approval rules (first match wins): plan-exception=2" in result.output
