"""Reasons and warnings in the reader's language, with the units people read (Gio, cœurs).

Every text is an English gettext id translated through the control plane's catalogs
(policies.translation), so one catalog holds the UI and the policy texts. Agreements are
the translators' call too: an amount and its participle ("4 Gio demandés", "1 demandée")
is one message whose context is the resource and whose plural form follows the number.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Mapping

from babel.numbers import get_decimal_symbol, get_group_symbol

from policies.reasons import Reason, UsageWarning
from policies.translation import Texts, _np, _p, texts
from policies.vocabulary import _lang

Forms = tuple[str, str, str]  # (context, singular, plural) as marked by _np

LABELS: dict[str, tuple[str, str]] = {  # (context, English name)
    "cpu": _p("resource", "CPU"),
    "memory_mib": _p("resource", "memory"),
    "disk_mib": _p("resource", "disk"),
    "services.website": _p("resource", "websites"),
    "services.postgresql": _p("resource", "PostgreSQL databases"),
    "services.mariadb": _p("resource", "MariaDB databases"),
    "services.application": _p("resource", "applications"),
    "mailboxes": _p("resource", "mailboxes"),
    "mail_storage_mib": _p("resource", "mail storage"),
}

# An amount of each resource with a participle; the context is the resource, whose amount
# the participle agrees with (its unit, or for counts the resource's own noun): French
# "4 Gio demandés", "1 demandée" (mailboxes), "0 restant". The plural follows the amount.
REQUESTED: dict[str, Forms] = {
    "cpu": _np("cpu", "%(amount)s requested", "%(amount)s requested"),
    "memory_mib": _np("memory_mib", "%(amount)s requested", "%(amount)s requested"),
    "disk_mib": _np("disk_mib", "%(amount)s requested", "%(amount)s requested"),
    "services.website": _np("services.website", "%(amount)s requested", "%(amount)s requested"),
    "services.postgresql": _np("services.postgresql", "%(amount)s requested",
                               "%(amount)s requested"),
    "services.mariadb": _np("services.mariadb", "%(amount)s requested", "%(amount)s requested"),
    "services.application": _np("services.application", "%(amount)s requested",
                                "%(amount)s requested"),
    "mailboxes": _np("mailboxes", "%(amount)s requested", "%(amount)s requested"),
    "mail_storage_mib": _np("mail_storage_mib", "%(amount)s requested", "%(amount)s requested"),
    "": _np("amount", "%(amount)s requested", "%(amount)s requested"),  # any other resource
}
LEFT: dict[str, Forms] = {
    "cpu": _np("cpu", "%(amount)s left", "%(amount)s left"),
    "memory_mib": _np("memory_mib", "%(amount)s left", "%(amount)s left"),
    "disk_mib": _np("disk_mib", "%(amount)s left", "%(amount)s left"),
    "services.website": _np("services.website", "%(amount)s left", "%(amount)s left"),
    "services.postgresql": _np("services.postgresql", "%(amount)s left", "%(amount)s left"),
    "services.mariadb": _np("services.mariadb", "%(amount)s left", "%(amount)s left"),
    "services.application": _np("services.application", "%(amount)s left", "%(amount)s left"),
    "mailboxes": _np("mailboxes", "%(amount)s left", "%(amount)s left"),
    "mail_storage_mib": _np("mail_storage_mib", "%(amount)s left", "%(amount)s left"),
    "": _np("amount", "%(amount)s left", "%(amount)s left"),  # any other resource
}
ALLOCATED: dict[str, Forms] = {
    "cpu": _np("cpu", "%(amount)s allocated", "%(amount)s allocated"),
    "memory_mib": _np("memory_mib", "%(amount)s allocated", "%(amount)s allocated"),
    "disk_mib": _np("disk_mib", "%(amount)s allocated", "%(amount)s allocated"),
    "services.website": _np("services.website", "%(amount)s allocated", "%(amount)s allocated"),
    "services.postgresql": _np("services.postgresql", "%(amount)s allocated",
                               "%(amount)s allocated"),
    "services.mariadb": _np("services.mariadb", "%(amount)s allocated", "%(amount)s allocated"),
    "services.application": _np("services.application", "%(amount)s allocated",
                                "%(amount)s allocated"),
    "mailboxes": _np("mailboxes", "%(amount)s allocated", "%(amount)s allocated"),
    "mail_storage_mib": _np("mail_storage_mib", "%(amount)s allocated", "%(amount)s allocated"),
    "": _np("amount", "%(amount)s allocated", "%(amount)s allocated"),  # any other resource
}
USED: dict[str, Forms] = {
    "cpu": _np("cpu", "%(amount)s used", "%(amount)s used"),
    "memory_mib": _np("memory_mib", "%(amount)s used", "%(amount)s used"),
    "disk_mib": _np("disk_mib", "%(amount)s used", "%(amount)s used"),
    "services.website": _np("services.website", "%(amount)s used", "%(amount)s used"),
    "services.postgresql": _np("services.postgresql", "%(amount)s used", "%(amount)s used"),
    "services.mariadb": _np("services.mariadb", "%(amount)s used", "%(amount)s used"),
    "services.application": _np("services.application", "%(amount)s used", "%(amount)s used"),
    "mailboxes": _np("mailboxes", "%(amount)s used", "%(amount)s used"),
    "mail_storage_mib": _np("mail_storage_mib", "%(amount)s used", "%(amount)s used"),
    "": _np("amount", "%(amount)s used", "%(amount)s used"),  # any other resource
}


@lru_cache(maxsize=None)
def _separators(lang: str) -> dict[int, str]:
    return str.maketrans({",": get_group_symbol(lang), ".": get_decimal_symbol(lang)})


def format_number(value: float, locale: str = "fr", decimals: int = 2) -> str:
    """1536.5 -> '1 536,5' (fr, narrow no-break space) / '1,536.5' (en).

    Python rounds and groups as before, CLDR (babel) gives each language's separators:
    babel's format_decimal differs on 2.675, very large numbers and infinity.
    """
    value = round(float(value), decimals) + 0.0
    text = f"{value:,.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{value:,.0f}"
    return text.translate(_separators(_lang(locale)))


def _shown(resource: str, value: float) -> float:
    """The number a reader sees (4096 MiB is shown as 4): it decides singular or plural."""
    if resource.endswith("_mib"):
        for step in (1024 * 1024, 1024):
            if abs(value) >= step:
                return round(value / step, 2)
    return round(value, 2)


def format_quantity(resource: str, value: float, locale: str = "fr") -> str:
    """A resource amount with its unit: '1,5 Gio', '0.5 cores', '3' (a count)."""
    t = texts(locale)
    shown = _shown(resource, value)
    number = format_number(shown, t.lang)
    if resource.endswith("_mib"):
        if abs(value) >= 1024 * 1024:
            return t.pgettext("quantity", "%(number)s TiB", number=number)
        if abs(value) >= 1024:
            return t.pgettext("quantity", "%(number)s GiB", number=number)
        return t.pgettext("quantity", "%(number)s MiB", number=number)
    if resource == "cpu":
        return t.npgettext("quantity", "%(number)s core", "%(number)s cores", t.count(shown),
                           number=number)
    return number


def _amount(participle: Mapping[str, Forms], resource: str, value: float, t: Texts) -> str:
    """'4 Gio demandés': the amount and its participle, agreed by the catalog."""
    context, singular, plural = participle.get(resource) or participle[""]
    return t.npgettext(context, singular, plural, t.count(_shown(resource, value)),
                       amount=format_quantity(resource, value, t.lang))


def resource_label(resource: str, locale: str = "fr") -> str:
    """What people call a quota resource ('mémoire' / 'memory'); unknown names as they are."""
    if resource not in LABELS:
        return resource
    return texts(locale).pgettext(*LABELS[resource])


def format_reason(reason: Reason, locale: str = "fr") -> str:
    """One sentence for the person who asked, in their language (French by default)."""
    t = texts(locale)
    code, res = reason.code, reason.resource
    label = resource_label(res, t.lang)
    q = lambda value: format_quantity(res, value, t.lang)  # noqa: E731
    choices = ", ".join(reason.choices)
    plan = reason.plan_title.get(t.lang) or reason.plan
    if code == "over_quota":
        # TRANSLATORS: "memory: 4 GiB requested, 1.5 GiB left of 8 GiB (plan “ministry”)".
        return t.gettext("%(label)s: %(requested)s, %(left)s of %(quota)s (plan “%(plan)s”)",
                         label=label, requested=_amount(REQUESTED, res, reason.requested, t),
                         left=_amount(LEFT, res, reason.remaining, t), quota=q(reason.quota),
                         plan=plan)
    if code == "over_plan":
        # TRANSLATORS: "CPU: 3 cores allocated, plan “agency” allows only 2 cores".
        return t.gettext("%(label)s: %(allocated)s, plan “%(plan)s” allows only %(quota)s",
                         label=label, allocated=_amount(ALLOCATED, res, reason.requested, t),
                         plan=plan, quota=q(reason.quota))
    if code == "unknown_plan":
        return t.gettext("unknown plan “%(plan)s”; possible plans: %(choices)s",
                         plan=reason.plan, choices=choices)
    if code == "unknown_kind":
        return t.gettext("unknown kind of service “%(kind)s”; possible kinds: %(choices)s",
                         kind=reason.detail, choices=choices)
    if code == "kind_disabled":
        return t.gettext("“%(kind)s” services cannot be requested at the moment",
                         kind=reason.detail)
    if code == "unknown_size":
        kind = res.split(".", 1)[-1]
        if reason.detail:
            return t.gettext("unknown size “%(size)s” for %(kind)s; "
                             "possible sizes: %(choices)s",
                             size=reason.detail, kind=kind, choices=choices)
        return t.gettext("no size chosen for %(kind)s; possible sizes: %(choices)s",
                         kind=kind, choices=choices)
    if code == "mailbox_size":
        low, high = q(reason.minimum), q(reason.maximum)
        if reason.requested is not None:
            # TRANSLATORS: %(requested)s is an amount with its participle ("12 GiB requested").
            return t.gettext("mailbox size: %(requested)s, must be between %(low)s and %(high)s",
                             requested=_amount(REQUESTED, res, reason.requested, t),
                             low=low, high=high)
        return t.gettext("mailbox size: got “%(value)s”, must be between %(low)s and %(high)s",
                         value=reason.detail, low=low, high=high)
    if code == "invalid_value":
        least = q(reason.minimum) if reason.minimum is not None else format_number(0, t.lang)
        if reason.detail:
            return t.gettext("%(label)s: invalid value “%(value)s” (at least %(least)s)",
                             label=label, value=reason.detail, least=least)
        return t.gettext("%(label)s: missing value (at least %(least)s)",
                         label=label, least=least)
    if code == "unknown_resource":
        return t.gettext("unknown resource “%(resource)s”; possible resources: %(choices)s",
                         resource=reason.detail, choices=choices)
    if code == "amount_not_positive":
        return t.gettext("%(label)s: the amount must be a number above zero, got “%(value)s”",
                         label=label, value=reason.detail)
    if code == "amount_not_whole" and res == "cpu":
        return t.gettext("%(label)s: the amount must be at most two decimals, got “%(value)s”",
                         label=label, value=reason.detail)
    if code == "amount_not_whole":
        return t.gettext("%(label)s: the amount must be a whole number, got “%(value)s”",
                         label=label, value=reason.detail)
    if code == "amount_too_large":
        # TRANSLATORS: %(requested)s is an amount with its participle ("3 TiB requested").
        return t.gettext("%(label)s: %(requested)s, at most %(maximum)s per exception",
                         label=label, requested=_amount(REQUESTED, res, reason.requested, t),
                         maximum=q(reason.maximum))
    if code == "justification_missing":
        return t.gettext("justification: explain why this increase is needed")
    if code == "justification_too_short":
        return t.ngettext("justification: at least %(minimum)s characters (got %(length)s)",
                          "justification: at least %(minimum)s characters (got %(length)s)",
                          t.count(reason.requested), minimum=f"{reason.minimum:g}",
                          length=f"{reason.requested:g}")
    if code == "ends_in_past":
        return t.gettext("end date: %(date)s is already past", date=reason.detail)
    return f"{reason.code} {reason.resource} {reason.detail}".strip()


def format_warning(warning: UsageWarning, locale: str = "fr") -> str:
    """'disque : 9,2 Gio utilisés sur 10 Gio (92 %), seuil d’alerte 90 %'."""
    t = texts(locale)
    res = warning.resource
    label = resource_label(res, t.lang)
    used = _amount(USED, res, warning.used, t)
    quota = format_quantity(res, warning.quota, t.lang)
    if warning.percent is None:
        # TRANSLATORS: "disk: 5 MiB used, quota 0 MiB (exceeded)".
        return t.gettext("%(label)s: %(used)s, quota %(quota)s (exceeded)",
                         label=label, used=used, quota=quota)
    # TRANSLATORS: "disk: 90 GiB used of 100 GiB (90%), warning threshold 90%".
    return t.gettext("%(label)s: %(used)s of %(quota)s (%(percent)s%%), "
                     "warning threshold %(threshold)s%%",
                     label=label, used=used, quota=quota,
                     percent=format_number(warning.percent, t.lang, 1),
                     threshold=warning.threshold)
