"""Load and validate sizes.yaml, platform.yaml and plans.yaml, then assemble every rule file."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from policies.loader_rules import parse_approval, parse_catalogue, parse_naming
from policies.model import (KINDS, LOCALES, MAILBOX, RESOURCES, ExceptionRules, MailboxLimits,
    Plan, Policies, PolicyError, Size)
from policies.resources import Resources
from policies.schema import Checker, read_yaml

POLICIES_DIR = Path(__file__).resolve().parent
PLAN_NAME = r"[a-z][a-z0-9_-]{1,31}"
_QUOTA_FIELDS = ("cpu", "memory_mib", "disk_mib", "services", "mailboxes", "mail_storage_mib")
REGISTRY_FIELD = "registry_mib"  # a plan's image registry quota (not a Resources field)
MAX_REGISTRY_MIB = 16 * 1024 * 1024  # 16 TiB


def _number(value: Any, where: str, *, minimum: float, maximum: float, integer: bool) -> float:
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(f"{where}: expected {kind}, got {value!r}")
    if integer and int(value) != value:
        raise PolicyError(f"{where}: expected a whole number, got {value!r}")
    if not minimum <= value <= maximum:
        raise PolicyError(f"{where}: expected {kind} between {minimum:g} and {maximum:g}, "
                          f"got {value!r}")
    return value


def _parse_size(kind: str, name: str, raw: Any, where: str, *, disk: bool = True) -> Size:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: expected a mapping with cpu, memory_mib, pids, disk_mib")
    fields = {"cpu", "memory_mib", "pids"} | ({"disk_mib"} if disk else set())
    unknown = set(raw) - fields
    if unknown:
        raise PolicyError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}; "
                          f"expected {', '.join(sorted(fields))}")
    missing = fields - set(raw)
    if missing:
        raise PolicyError(f"{where}: missing field(s) {', '.join(sorted(missing))}")
    cpu = float(_number(raw["cpu"], f"{where}.cpu", minimum=0.01, maximum=64, integer=False))
    if round(cpu, 3) != cpu:
        raise PolicyError(f"{where}.cpu: expected at most 3 decimals, got {raw['cpu']!r}")
    return Size(
        kind=kind,
        name=name,
        cpu=cpu,
        memory_mib=int(_number(raw["memory_mib"], f"{where}.memory_mib", minimum=16,
                               maximum=262144, integer=True)),
        pids=int(_number(raw["pids"], f"{where}.pids", minimum=8, maximum=65536, integer=True)),
        disk_mib=int(_number(raw.get("disk_mib", 0), f"{where}.disk_mib",
                             minimum=16 if disk else 0, maximum=16 * 1024 * 1024,
                             integer=True)),
    )


def parse_sizes(raw: Any, filename: str = "sizes.yaml") -> dict[str, dict[str, Size]]:
    """Validate the sizes document: kind -> size name -> resources (the `mailbox` entry aside)."""
    if not isinstance(raw, dict):
        raise PolicyError(f"{filename}: expected a mapping of kind -> sizes")
    sizes: dict[str, dict[str, Size]] = {}
    for kind, table in raw.items():
        if kind == MAILBOX:
            continue
        if kind not in KINDS:
            raise PolicyError(f"{filename}: unknown kind {kind!r}; expected one of "
                              f"{', '.join(KINDS)} (or {MAILBOX} for mailbox limits)")
        if not isinstance(table, dict) or not table:
            raise PolicyError(f"{filename}: {kind}: expected at least one size (S, M, L, …)")
        sizes[kind] = {}
        for name, spec in table.items():
            if not isinstance(name, str) or not re.fullmatch(r"[A-Z0-9]{1,8}", name):
                raise PolicyError(f"{filename}: {kind}.{name}: size names are 1-8 capitals "
                                  "or digits")
            sizes[kind][name] = _parse_size(kind, name, spec, f"{filename}: {kind}.{name}")
    for kind in KINDS:
        if kind not in sizes:
            raise PolicyError(f"{filename}: kind {kind!r} has no sizes")
    return sizes


def parse_mailbox(raw: Any, filename: str = "sizes.yaml") -> MailboxLimits:
    """The `mailbox` entry of sizes.yaml: bounds and default of a mailbox's size in MiB."""
    chk = Checker(filename)
    if MAILBOX not in raw:
        raise chk.fail(MAILBOX, "missing; expected min_mib, max_mib and default_mib")
    table = chk.mapping(MAILBOX, raw[MAILBOX], required=("min_mib", "max_mib", "default_mib"))
    low = chk.whole("mailbox.min_mib", table["min_mib"], minimum=1)
    high = chk.whole("mailbox.max_mib", table["max_mib"], minimum=low)
    default = chk.whole("mailbox.default_mib", table["default_mib"], minimum=low, maximum=high)
    return MailboxLimits(min_mib=low, max_mib=high, default_mib=default)


def parse_platform(raw: Any, filename: str = "platform.yaml") -> dict[str, Size]:
    if not isinstance(raw, dict) or "proxy" not in raw:
        raise PolicyError(f"{filename}: expected a mapping with a 'proxy' entry")
    return {name: _parse_size("platform", name, spec, f"{filename}: {name}", disk=False)
            for name, spec in raw.items()}


def parse_quota(chk: Checker, path: str, raw: dict) -> Resources:
    """Every resource of a plan (or of exception limits), each one explicit."""
    services = chk.mapping(f"{path}.services", raw["services"], required=KINDS, what="kind")
    return Resources(
        cpu=chk.number(f"{path}.cpu", raw["cpu"], decimals=2),
        memory_mib=chk.whole(f"{path}.memory_mib", raw["memory_mib"]),
        disk_mib=chk.whole(f"{path}.disk_mib", raw["disk_mib"]),
        services={kind: chk.whole(f"{path}.services.{kind}", services[kind]) for kind in KINDS},
        mailboxes=chk.whole(f"{path}.mailboxes", raw["mailboxes"]),
        mail_storage_mib=chk.whole(f"{path}.mail_storage_mib", raw["mail_storage_mib"]),
    )


def _registry_quota(chk: Checker, path: str, spec: Any) -> int:
    """A plan's `registry_mib`: required, a whole number of MiB (0: no image may be stored)."""
    if not isinstance(spec, dict):
        raise chk.fail(path, "expected a mapping with title, "
                       f"{', '.join(_QUOTA_FIELDS)}, {REGISTRY_FIELD}", spec)
    if REGISTRY_FIELD not in spec:
        raise chk.fail(f"{path}.{REGISTRY_FIELD}", "missing (the image registry quota in MiB, "
                       "0 included)")
    return chk.whole(f"{path}.{REGISTRY_FIELD}", spec[REGISTRY_FIELD], maximum=MAX_REGISTRY_MIB)


def parse_plans(raw: Any, filename: str = "plans.yaml"
                ) -> tuple[dict[str, Plan], dict[str, int], ExceptionRules]:
    """plans.yaml: one quota plan per institution category, alert thresholds, exception bounds."""
    chk = Checker(filename)
    doc = chk.mapping("", raw, required=("plans", "warning_threshold", "exceptions"))
    table = doc["plans"]
    if not isinstance(table, dict) or not table:
        raise chk.fail("plans", "expected at least one plan (ministry, hospital, …)", table)
    plans: dict[str, Plan] = {}
    for name, spec in table.items():
        path = f"plans.{name}"
        if not isinstance(name, str) or not re.fullmatch(PLAN_NAME, name):
            raise chk.fail(path, "plan names are 2-32 lower-case letters, digits, - or _")
        registry_mib = _registry_quota(chk, path, spec)
        spec = chk.mapping(path, {k: v for k, v in spec.items() if k != REGISTRY_FIELD},
                           required=("title", *_QUOTA_FIELDS))
        title = chk.mapping(f"{path}.title", spec["title"], required=LOCALES, what="language")
        titles = {lang: chk.text(f"{path}.title.{lang}", title[lang]) for lang in LOCALES}
        plans[name] = Plan(name=name, title=titles, quota=parse_quota(chk, path, spec),
                           registry_mib=registry_mib)
    thresholds = chk.mapping("warning_threshold", doc["warning_threshold"] or {},
                             optional=RESOURCES, what="resource")
    warning = {res: chk.whole(f"warning_threshold.{res}", value, minimum=1, maximum=100)
               for res, value in thresholds.items()}
    exc = chk.mapping("exceptions", doc["exceptions"], required=("max_increase",),
                      optional=("min_justification_chars",))
    limits = chk.mapping("exceptions.max_increase", exc["max_increase"], required=_QUOTA_FIELDS,
                         what="resource")
    rules = ExceptionRules(
        max_increase=parse_quota(chk, "exceptions.max_increase", limits),
        min_justification_chars=chk.whole("exceptions.min_justification_chars",
                                          exc.get("min_justification_chars", 20), maximum=2000))
    return plans, warning, rules


def load(directory: Path | str | None = None) -> Policies:
    """Read and validate every policy file in `directory` (default: this package)."""
    base = Path(directory) if directory else POLICIES_DIR
    raw_sizes = read_yaml(base / "sizes.yaml")
    sizes = parse_sizes(raw_sizes)
    mailbox = parse_mailbox(raw_sizes)
    platform = parse_platform(read_yaml(base / "platform.yaml"))
    plans, warning, exceptions = parse_plans(read_yaml(base / "plans.yaml"))
    approval = parse_approval(read_yaml(base / "approval.yaml"), sizes)
    catalogue = parse_catalogue(read_yaml(base / "catalogue.yaml"))
    naming, reserved_labels = parse_naming(read_yaml(base / "naming.yaml"))
    return Policies(sizes=sizes, platform=platform, mailbox=mailbox, plans=plans,
                    warning_threshold=warning, exceptions=exceptions, approval=approval,
                    catalogue=catalogue, naming=naming, reserved_host_labels=reserved_labels)
