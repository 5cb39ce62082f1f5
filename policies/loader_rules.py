"""Load and validate approval.yaml, catalogue.yaml and naming.yaml."""
from __future__ import annotations

from typing import Any, Mapping

from policies.model import (ACTIONS, KINDS, REQUEST_KINDS, REQUEST_RESOURCES, ApprovalRule,
    KindEntry, NameRule, Size)
from policies.naming import IMAGE_RE, REGISTRY_PREFIX_RE
from policies.schema import Checker

RULE_NAME = r"[a-z][a-z0-9-]{1,40}"
USER_IMAGE_KINDS = ("application",)  # kinds whose image is chosen by the institution
NAME_KINDS = ("database", "mailbox", "application")


def _thresholds(chk: Checker, path: str, raw: Any) -> dict[str, float]:
    table = chk.mapping(path, raw, optional=REQUEST_RESOURCES, what="resource")
    if not table:
        raise chk.fail(path, f"expected at least one of {', '.join(REQUEST_RESOURCES)}")
    return {res: chk.number(f"{path}.{res}", value) for res, value in table.items()}


def _parse_rule(chk: Checker, path: str, raw: Any, size_names: list[str]) -> ApprovalRule:
    rule = chk.mapping(path, raw, required=("name", "approvals"), optional=("when", "description"))
    name = chk.text(f"{path}.name", rule["name"], pattern=RULE_NAME,
                    expected="expected a name of lower-case letters, digits and -")
    approvals = chk.whole(f"{path}.approvals", rule["approvals"], minimum=0, maximum=2)
    if "description" in rule:
        chk.text(f"{path}.description", rule["description"])
    when = chk.mapping(f"{path}.when", rule.get("when") or {},
                       optional=("action", "kinds", "sizes", "at_most", "above"), what="condition")
    actions = chk.texts(f"{path}.when.action", when["action"], allowed=ACTIONS) \
        if "action" in when else ()
    if "quota_increase" in actions and set(when) != {"action"}:
        raise chk.fail(f"{path}.when", "a rule for quota_increase can only test action (kinds, "
                                       "sizes and thresholds describe services)")
    return ApprovalRule(
        name=name,
        approvals=approvals,
        description=rule.get("description", ""),
        actions=actions,
        kinds=chk.texts(f"{path}.when.kinds", when["kinds"], allowed=REQUEST_KINDS)
        if "kinds" in when else (),
        sizes=chk.texts(f"{path}.when.sizes", when["sizes"], allowed=size_names)
        if "sizes" in when else (),
        at_most=_thresholds(chk, f"{path}.when.at_most", when["at_most"])
        if "at_most" in when else {},
        above=_thresholds(chk, f"{path}.when.above", when["above"]) if "above" in when else {},
    )


def parse_approval(raw: Any, sizes: Mapping[str, Mapping[str, Size]],
                   filename: str = "approval.yaml") -> tuple[ApprovalRule, ...]:
    """An ordered list of named rules; the first that matches decides how many approvals."""
    chk = Checker(filename)
    doc = chk.mapping("", raw, required=("rules",))
    if not isinstance(doc["rules"], list) or not doc["rules"]:
        raise chk.fail("rules", "expected a list of rules (name, when, approvals)", doc["rules"])
    size_names = sorted({name for table in sizes.values() for name in table})
    rules: list[ApprovalRule] = []
    for index, raw_rule in enumerate(doc["rules"]):
        rule = _parse_rule(chk, f"rules[{index}]", raw_rule, size_names)
        if any(other.name == rule.name for other in rules):
            raise chk.fail(f"rules[{index}].name", "already used by another rule", rule.name)
        rules.append(rule)
    last = len(rules) - 1
    if not rules[last].catch_all:
        raise chk.fail(f"rules[{last}].when", "the last rule must have no conditions, so that "
                                              "every request matches a rule")
    for index, rule in enumerate(rules):
        if rule.catch_all or "quota_increase" in rule.actions:
            if rule.approvals != 2:
                raise chk.fail(f"rules[{index}].approvals", "the first rule matching a "
                               "quota_increase must need 2 approvals (an exception to the plan)",
                               rule.approvals)
            break
    return tuple(rules)


def _root_images(chk: Checker, path: str, raw: Any) -> tuple[str, ...]:
    """Exact images allowed to run as root: each with a fixed version tag (not latest)."""
    item = "an image with its version tag (registry.dc.gov.bi/minisante/app:1.0)"
    images = chk.texts(path, raw, allow_empty=True, pattern=IMAGE_RE.pattern, item=item)
    for index, image in enumerate(images):
        last = image.split("@", 1)[0].rsplit("/", 1)[-1]
        if ":" not in last or last.endswith(":latest"):
            raise chk.fail(f"{path}[{index}]", f"expected {item}", image)
    return images


def _parse_kind(chk: Checker, kind: str, raw: Any) -> KindEntry:
    path = f"kinds.{kind}"
    if kind in USER_IMAGE_KINDS:
        entry = chk.mapping(path, raw, required=("enabled",),
                            optional=("registries", "images", "require_tag",
                                      "run_as_root_images"))
        registries = chk.texts(f"{path}.registries", entry.get("registries", []), allow_empty=True,
                               pattern=REGISTRY_PREFIX_RE.pattern,
                               item="a registry prefix ending with / (registry.dc.gov.bi/)")
        images = chk.texts(f"{path}.images", entry.get("images", []), allow_empty=True,
                           pattern=IMAGE_RE.pattern,
                           item="an image reference (registry.dc.gov.bi/app:1.0)")
        if not registries and not images:
            raise chk.fail(path, "expected registries or images (what may be deployed)")
        return KindEntry(kind=kind, enabled=chk.boolean(f"{path}.enabled", entry["enabled"]),
                         registries=registries, images=images,
                         require_tag=chk.boolean(f"{path}.require_tag",
                                                 entry.get("require_tag", True)),
                         run_as_root_images=_root_images(chk, f"{path}.run_as_root_images",
                                                         entry.get("run_as_root_images", [])))
    entry = chk.mapping(path, raw, required=("enabled", "image"),
                        optional=("versions", "default_version"))
    image = chk.text(f"{path}.image", entry["image"], pattern=IMAGE_RE.pattern,
                     expected="expected an image reference like comgov/nginx:bookworm")
    versions = chk.texts(f"{path}.versions", entry.get("versions", []), allow_empty=True,
                         pattern=r"[0-9A-Za-z][0-9A-Za-z._-]{0,31}",
                         item='a version written as quoted text ("15")')
    default = entry.get("default_version", versions[0] if versions else None)
    if default is not None and default not in versions:
        raise chk.fail(f"{path}.default_version", f"expected one of versions "
                       f"({', '.join(versions) or 'none listed'})", default)
    return KindEntry(kind=kind, enabled=chk.boolean(f"{path}.enabled", entry["enabled"]),
                     image=image, versions=versions, default_version=default)


def parse_catalogue(raw: Any, filename: str = "catalogue.yaml") -> dict[str, KindEntry]:
    """Every kind, with whether it can be requested and the images it may run."""
    chk = Checker(filename)
    doc = chk.mapping("", raw, required=("kinds",))
    kinds = chk.mapping("kinds", doc["kinds"], required=KINDS, what="kind")
    return {kind: _parse_kind(chk, kind, kinds[kind]) for kind in KINDS}


def parse_naming(raw: Any, filename: str = "naming.yaml"
                 ) -> tuple[dict[str, NameRule], frozenset[str]]:
    """Patterns and reserved words for database, mailbox and application names."""
    chk = Checker(filename)
    doc = chk.mapping("", raw, required=("hostname", *NAME_KINDS))
    host = chk.mapping("hostname", doc["hostname"], required=("reserved_labels",))
    labels = chk.texts("hostname.reserved_labels", host["reserved_labels"], allow_empty=True,
                       pattern=r"[a-z0-9-]{1,63}", item="a host label (mail)")
    rules = {}
    for what in NAME_KINDS:
        table = chk.mapping(what, doc[what], required=("pattern", "reserved"),
                            optional=("max_length",))
        reserved = chk.texts(f"{what}.reserved", table["reserved"], allow_empty=True,
                             item="a reserved word")
        rules[what] = NameRule(
            pattern=chk.regex(f"{what}.pattern", table["pattern"]),
            max_length=chk.whole(f"{what}.max_length", table.get("max_length", 63), minimum=1,
                                 maximum=255),
            reserved=frozenset(word.lower() for word in reserved))
    return rules, frozenset(labels)
