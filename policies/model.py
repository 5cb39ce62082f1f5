"""The loaded rules as plain frozen data, so the evaluator and the app share one vocabulary."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

from policies.naming import hostname_problem
from policies.quantities import Resources
# The vocabulary is re-exported: callers may keep importing it from policies.model.
from policies.vocabulary import (ACTIONS, KINDS, LOCALES, MAILBOX, REQUEST_KINDS,  # noqa: F401
    REQUEST_RESOURCES, RESOURCES, _lang)


class PolicyError(ValueError):
    """A policy file is malformed; the message names the file, the field and what is expected."""


@dataclass(frozen=True)
class Size:
    kind: str
    name: str
    cpu: float
    memory_mib: int
    pids: int
    disk_mib: int

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * 1024 * 1024

    @property
    def nano_cpus(self) -> int:
        return int(round(self.cpu * 1_000_000_000))

    @property
    def disk_bytes(self) -> int:
        return self.disk_mib * 1024 * 1024


@dataclass(frozen=True)
class MailboxLimits:
    """Mailboxes are sized in MiB within these bounds (there is no S/M/L for mail)."""

    min_mib: int
    max_mib: int
    default_mib: int


@dataclass(frozen=True)
class Plan:
    """A quota plan: what one institution of a category may hold in total."""

    name: str
    title: Mapping[str, str]  # locale -> display name ("ministère" / "ministry")
    quota: Resources
    # The institution's namespace in the image registry (`<acronym>/…`): total size of its
    # images, in MiB (plans.yaml `registry_mib`; not part of `quota`, which counts services).
    registry_mib: int = 0

    @property
    def registry_bytes(self) -> int:
        return self.registry_mib * 1024 * 1024

    def display(self, locale: str = "fr") -> str:
        return self.title.get(_lang(locale)) or self.name


@dataclass(frozen=True)
class ApprovalRule:
    """One line of approval.yaml; a request matches when every condition in it holds."""

    name: str
    approvals: int  # 0 = automatic, 1 = one operator, 2 = two different operators
    description: str = ""
    actions: tuple[str, ...] = ()  # empty = any action
    kinds: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()
    at_most: Mapping[str, float] = field(default_factory=dict)  # every listed value <= limit
    above: Mapping[str, float] = field(default_factory=dict)  # any listed value > limit

    @property
    def catch_all(self) -> bool:
        return not (self.actions or self.kinds or self.sizes or self.at_most or self.above)


@dataclass(frozen=True)
class KindEntry:
    """catalogue.yaml for one kind: can it be requested, which image, which versions."""

    kind: str
    enabled: bool
    image: str | None = None  # the platform's image (None for user applications)
    versions: tuple[str, ...] = ()
    default_version: str | None = None
    registries: tuple[str, ...] = ()  # application: allowed image prefixes ("registry.x/")
    images: tuple[str, ...] = ()  # application: images allowed by exact name
    require_tag: bool = True  # application: refuse untagged and ":latest" references
    run_as_root_images: tuple[str, ...] = ()  # application: exact images that may run as root


@dataclass(frozen=True)
class NameRule:
    """naming.yaml for one kind of name (database, mailbox, application)."""

    pattern: re.Pattern
    max_length: int
    reserved: frozenset[str]


@dataclass(frozen=True)
class ExceptionRules:
    """Bounds on quota increase requests (plans.yaml `exceptions`)."""

    max_increase: Resources
    min_justification_chars: int = 20


@dataclass(frozen=True)
class Policies:
    sizes: Mapping[str, Mapping[str, Size]]
    platform: Mapping[str, Size]
    mailbox: MailboxLimits | None = None
    plans: Mapping[str, Plan] = field(default_factory=dict)
    warning_threshold: Mapping[str, int] = field(default_factory=dict)  # resource -> percent
    exceptions: ExceptionRules | None = None
    approval: tuple[ApprovalRule, ...] = ()
    catalogue: Mapping[str, KindEntry] = field(default_factory=dict)
    naming: Mapping[str, NameRule] = field(default_factory=dict)
    reserved_host_labels: frozenset[str] = frozenset()

    def size(self, kind: str, name: str) -> Size:
        """The size `name` of `kind`; KeyError when unknown."""
        return self.sizes[kind][name]

    def size_names(self, kind: str) -> list[str]:
        return list(self.sizes.get(kind, {}))

    def plan(self, name: str) -> Plan:
        """The plan `name`; KeyError when unknown."""
        return self.plans[name]

    def kind_enabled(self, kind: str) -> bool:
        entry = self.catalogue.get(kind)
        return entry is not None and entry.enabled

    def enabled_kinds(self) -> list[str]:
        return [kind for kind in KINDS if self.kind_enabled(kind)]

    def image(self, kind: str) -> str | None:
        """The platform image of a managed kind (None for user applications)."""
        entry = self.catalogue.get(kind)
        return entry.image if entry is not None else None

    def hostname_problem(self, hostname: str, domain: str) -> str | None:
        """Like policies.hostname_problem, plus 'reserved' for names kept for the platform."""
        problem = hostname_problem(hostname, domain)
        if problem is None and hostname != domain.lower().strip("."):
            first, _, rest = hostname.partition(".")
            if rest == domain.lower().strip(".") and first in self.reserved_host_labels:
                return "reserved"
        return problem

