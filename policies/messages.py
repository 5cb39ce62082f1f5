"""Reasons and warnings in French and English, with the units people read (Gio, cœurs)."""
from __future__ import annotations

from policies.model import _lang
from policies.reasons import Reason, UsageWarning

# resource -> (French label, gender of the counted noun, English label)
LABELS = {
    "cpu": ("processeur", "m", "CPU"),
    "memory_mib": ("mémoire", "m", "memory"),
    "disk_mib": ("disque", "m", "disk"),
    "services.website": ("sites web", "m", "websites"),
    "services.postgresql": ("bases PostgreSQL", "f", "PostgreSQL databases"),
    "services.mariadb": ("bases MariaDB", "f", "MariaDB databases"),
    "services.application": ("applications", "f", "applications"),
    "mailboxes": ("boîtes aux lettres", "f", "mailboxes"),
    "mail_storage_mib": ("stockage du courrier", "m", "mail storage"),
}
_UNITS = {"fr": ("Mio", "Gio", "Tio"), "en": ("MiB", "GiB", "TiB")}


def format_number(value: float, locale: str = "fr", decimals: int = 2) -> str:
    """1536.5 -> '1 536,5' (fr, narrow no-break space) / '1,536.5' (en)."""
    value = round(float(value), decimals) + 0.0
    text = f"{value:,.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{value:,.0f}"
    if _lang(locale) == "fr":
        text = text.translate(str.maketrans({",": "\u202f", ".": ","}))
    return text


def _shown(resource: str, value: float) -> float:
    """The number a reader sees (4096 MiB is shown as 4): it decides singular or plural."""
    if resource.endswith("_mib"):
        for step in (1024 * 1024, 1024):
            if abs(value) >= step:
                return round(value / step, 2)
    return round(value, 2)


def format_quantity(resource: str, value: float, locale: str = "fr") -> str:
    """A resource amount with its unit: '1,5 Gio', '0.5 cores', '3' (a count)."""
    lang = _lang(locale)
    shown = _shown(resource, value)
    if resource.endswith("_mib"):
        mib, gib, tib = _UNITS[lang]
        unit = tib if abs(value) >= 1024 * 1024 else gib if abs(value) >= 1024 else mib
        return f"{format_number(shown, lang)} {unit}"
    if resource == "cpu":
        if lang == "fr":
            unit = "cœurs" if abs(shown) >= 2 else "cœur"
        else:
            unit = "core" if shown == 1 else "cores"
        return f"{format_number(shown, lang)} {unit}"
    return format_number(shown, lang)


def _agree(word: str, resource: str, value: float) -> str:
    """French past participle agreeing with the quantity ('4 Gio demandés', '1,5 Gio restant')."""
    counted = resource.startswith("services.") or resource == "mailboxes"
    gender = LABELS.get(resource, ("", "m", ""))[1] if counted else "m"
    plural = abs(_shown(resource, value)) >= 2
    return word + ("e" if gender == "f" else "") + ("s" if plural else "")


def resource_label(resource: str, locale: str = "fr") -> str:
    fr, _gender, en = LABELS.get(resource, (resource, "m", resource))
    return fr if _lang(locale) == "fr" else en


def _title(reason: Reason, lang: str) -> str:
    return reason.plan_title.get(lang) or reason.plan


def format_reason(reason: Reason, locale: str = "fr") -> str:
    """One sentence for the person who asked, in their language (French by default)."""
    lang = _lang(locale)
    res = reason.resource
    label = resource_label(res, lang)
    q = lambda value: format_quantity(res, value, lang)  # noqa: E731
    choices = ", ".join(reason.choices)
    if reason.code == "over_quota":
        fr = f"{label} : {q(reason.requested)} {_agree('demandé', res, reason.requested)}, " \
             f"{q(reason.remaining)} {_agree('restant', res, reason.remaining)} sur " \
             f"{q(reason.quota)} (plan « {_title(reason, 'fr')} »)"
        en = f"{label}: {q(reason.requested)} requested, {q(reason.remaining)} left of " \
             f"{q(reason.quota)} (plan “{_title(reason, 'en')}”)"
    elif reason.code == "over_plan":
        fr = f"{label} : {q(reason.requested)} {_agree('alloué', res, reason.requested)}, " \
             f"le plan « {_title(reason, 'fr')} » n'en permet que {q(reason.quota)}"
        en = f"{label}: {q(reason.requested)} allocated, plan “{_title(reason, 'en')}” " \
             f"allows only {q(reason.quota)}"
    elif reason.code == "unknown_plan":
        fr = f"plan « {reason.plan} » inconnu ; plans possibles : {choices}"
        en = f"unknown plan “{reason.plan}”; possible plans: {choices}"
    elif reason.code == "unknown_kind":
        fr = f"type de service « {reason.detail} » inconnu ; types possibles : {choices}"
        en = f"unknown kind of service “{reason.detail}”; possible kinds: {choices}"
    elif reason.code == "kind_disabled":
        fr = f"les services « {reason.detail} » ne peuvent pas être demandés pour le moment"
        en = f"“{reason.detail}” services cannot be requested at the moment"
    elif reason.code == "unknown_size":
        kind = res.split(".", 1)[-1]
        fr = (f"taille « {reason.detail} » inconnue pour {kind}" if reason.detail
              else f"aucune taille choisie pour {kind}") + f" ; tailles possibles : {choices}"
        en = (f"unknown size “{reason.detail}” for {kind}" if reason.detail
              else f"no size chosen for {kind}") + f"; possible sizes: {choices}"
    elif reason.code == "mailbox_size":
        low, high = q(reason.minimum), q(reason.maximum)
        if reason.requested is not None:
            fr = f"taille de boîte aux lettres : {q(reason.requested)} " \
                 f"{_agree('demandé', res, reason.requested)}, à choisir entre {low} et {high}"
            en = f"mailbox size: {q(reason.requested)} requested, must be between {low} and {high}"
        else:
            fr = f"taille de boîte aux lettres : « {reason.detail} » reçu, à choisir entre " \
                 f"{low} et {high}"
            en = f"mailbox size: got “{reason.detail}”, must be between {low} and {high}"
    elif reason.code == "invalid_value":
        least = q(reason.minimum) if reason.minimum is not None else "0"
        if reason.detail:
            fr = f"{label} : valeur invalide « {reason.detail} » (au moins {least})"
            en = f"{label}: invalid value “{reason.detail}” (at least {least})"
        else:
            fr = f"{label} : valeur manquante (au moins {least})"
            en = f"{label}: missing value (at least {least})"
    elif reason.code == "unknown_resource":
        fr = f"ressource « {reason.detail} » inconnue ; ressources possibles : {choices}"
        en = f"unknown resource “{reason.detail}”; possible resources: {choices}"
    elif reason.code == "amount_not_positive":
        fr = f"{label} : la quantité doit être un nombre supérieur à zéro, " \
             f"« {reason.detail} » reçu"
        en = f"{label}: the amount must be a number above zero, got “{reason.detail}”"
    elif reason.code == "amount_not_whole":
        step = "au plus deux décimales" if res == "cpu" else "un nombre entier"
        step_en = "at most two decimals" if res == "cpu" else "a whole number"
        fr = f"{label} : la quantité doit être {step}, « {reason.detail} » reçu"
        en = f"{label}: the amount must be {step_en}, got “{reason.detail}”"
    elif reason.code == "amount_too_large":
        fr = f"{label} : {q(reason.requested)} {_agree('demandé', res, reason.requested)}, " \
             f"au plus {q(reason.maximum)} par exception"
        en = f"{label}: {q(reason.requested)} requested, at most {q(reason.maximum)} per exception"
    elif reason.code == "justification_missing":
        fr = "justification : expliquez pourquoi cette augmentation est nécessaire"
        en = "justification: explain why this increase is needed"
    elif reason.code == "justification_too_short":
        fr = f"justification : au moins {reason.minimum:g} caractères " \
             f"({reason.requested:g} reçus)"
        en = f"justification: at least {reason.minimum:g} characters (got {reason.requested:g})"
    elif reason.code == "ends_in_past":
        fr = f"date de fin : le {reason.detail} est déjà passé"
        en = f"end date: {reason.detail} is already past"
    else:
        fr = en = f"{reason.code} {reason.resource} {reason.detail}".strip()
    return fr if lang == "fr" else en


def format_warning(warning: UsageWarning, locale: str = "fr") -> str:
    """'disque : 9,2 Gio utilisés sur 10 Gio (92 %), seuil d’alerte 90 %'."""
    lang = _lang(locale)
    res = warning.resource
    label = resource_label(res, lang)
    used = format_quantity(res, warning.used, lang)
    quota = format_quantity(res, warning.quota, lang)
    if warning.percent is None:
        if lang == "fr":
            return f"{label} : {used} {_agree('utilisé', res, warning.used)}, " \
                   f"quota {quota} (dépassé)"
        return f"{label}: {used} used, quota {quota} (exceeded)"
    if lang == "fr":
        return (f"{label} : {used} {_agree('utilisé', res, warning.used)} sur {quota} "
                f"({format_number(warning.percent, 'fr', 1)} %), "
                f"seuil d’alerte {warning.threshold} %")
    return (f"{label}: {used} used of {quota} ({format_number(warning.percent, 'en', 1)}%), "
            f"warning threshold {warning.threshold}%")
