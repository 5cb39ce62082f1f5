"""The words every policy module shares: kinds, resources, actions, languages.

It imports nothing of policies, so any module can use it without an import circle.
"""
from __future__ import annotations

# Kinds of service that run as containers (each has sizes S/M/L in sizes.yaml).
KINDS = ("website", "postgresql", "mariadb", "application")
# What a request can ask for: a container kind, or a mailbox (sized in MiB, not S/M/L).
MAILBOX = "mailbox"
REQUEST_KINDS = (*KINDS, MAILBOX)
# Every quota resource, as named in reasons, warnings and quota exceptions.
RESOURCES = ("cpu", "memory_mib", "disk_mib", *(f"services.{k}" for k in KINDS),
             "mailboxes", "mail_storage_mib")
# Resources a single request consumes; approval rules may compare them with thresholds.
REQUEST_RESOURCES = ("cpu", "memory_mib", "disk_mib", "mail_storage_mib")
# What approval rules distinguish: a new service or mailbox, a size change, a plan exception.
ACTIONS = ("create", "resize", "quota_increase")
LOCALES = ("fr", "en")


def _lang(locale: str | None) -> str:
    """'fr', 'fr_BI', 'en-GB' -> 'fr' / 'en'; anything else falls back to French (the default)."""
    code = (locale or "fr").replace("-", "_").split("_")[0].lower()
    return code if code in LOCALES else "fr"
