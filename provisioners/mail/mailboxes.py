"""Mail domains, mailboxes and aliases as LDAP entries, the single source the mail platform reads.

Each institution's mail lives under ``ou=mail,ou=<ACRONYM>,ou=institutions,<base>`` (that
entry carries the institution's ``mailDomain``); mailboxes and aliases are ``mail=<address>``
entries below it (schema: ``provisioners/directory/comgov.schema``). Postfix and Dovecot query
these entries live, so a change is in force at the next SMTP/IMAP transaction. Usage::

    ensure_mail_service_account(cfg, service_password)     # what the platform binds as
    ensure_mail_domain(cfg, "MINISANTE", "minisante.gov.bi")
    ensure_mailbox(cfg, "MINISANTE", "info@minisante.gov.bi", "s3cret", 512 << 20)
    ensure_alias(cfg, "MINISANTE", "contact@minisante.gov.bi", ["info@minisante.gov.bi"])
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import ldap3
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from provisioners.directory.tree import (
    DirectoryConfig,
    DirectoryError,
    _admin,
    _check_acronym,
    _check_password,
    _ensure_entry,
    _ensure_ou,
    _first,
    _get,
    _institution_dn,
    _ok,
    _search,
    _ssha_matches,
    _values,
    hash_password,
)

log = logging.getLogger(__name__)

MAX_QUOTA_BYTES = 1 << 40  # 1 TiB: anything larger is a typo
MAX_ALIAS_TARGETS = 100
_LOCAL_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN_RE = re.compile(rf"(?:{_LABEL}\.)+[a-z]{{2,63}}")
_SERVICE_PASSWORD_RE = re.compile(r"[A-Za-z0-9_-]{16,128}")
MAILBOX_CLASSES = ["top", "comgovMailbox"]
ALIAS_CLASSES = ["top", "comgovMailAlias"]


@dataclass(frozen=True)
class Mailbox:
    """A mailbox as the directory holds it (never its password)."""

    address: str
    quota_bytes: int
    enabled: bool
    dn: str


@dataclass(frozen=True)
class MailAlias:
    """An address that delivers to other addresses of the same institution."""

    address: str
    targets: tuple[str, ...]
    dn: str


# --- validation ------------------------------------------------------------------------------
def validate_domain(domain: str) -> str:
    """A lowercase DNS name with at least two labels; it ends up in LDAP filters and paths."""
    if not isinstance(domain, str) or len(domain) > 253:
        raise ValueError(f"invalid mail domain: {domain!r}")
    domain = domain.lower()
    if _DOMAIN_RE.fullmatch(domain) is None:
        raise ValueError(f"invalid mail domain: {domain!r} (expected e.g. minisante.gov.bi)")
    return domain


def validate_address(address: str) -> str:
    """Lowercased local@domain; the local part becomes a maildir path, so no '..' or '/'."""
    if not isinstance(address, str) or len(address) > 254 or address.count("@") != 1:
        raise ValueError(f"invalid e-mail address: {address!r}")
    local, domain = address.lower().split("@")
    if _LOCAL_RE.fullmatch(local) is None or ".." in local:
        raise ValueError(
            f"invalid e-mail address: {address!r} (the part before @ may hold a-z, 0-9, '.', "
            "'-', '_', must start and end with a letter or digit and have no '..')")
    return f"{local}@{validate_domain(domain)}"


def validate_quota(quota_bytes: int) -> int:
    """A positive whole number of bytes, at most 1 TiB."""
    if isinstance(quota_bytes, bool) or not isinstance(quota_bytes, int) \
            or not 0 < quota_bytes <= MAX_QUOTA_BYTES:
        raise ValueError(f"quota_bytes must be an integer between 1 and {MAX_QUOTA_BYTES}")
    return quota_bytes


def validate_service_password(password: str) -> str:
    """The platform's bind password is pasted into Postfix/Dovecot files: a plain token only."""
    if not isinstance(password, str) or _SERVICE_PASSWORD_RE.fullmatch(password) is None:
        raise ValueError("mail service password must be 16-128 characters of A-Z a-z 0-9 _ -")
    return password


def find_alias_loop(aliases: dict[str, Iterable[str]], start: str) -> list[str] | None:
    """Return a cycle reachable from `start` through aliases (as a path), or None."""
    path: list[str] = []
    on_path: set[str] = set()
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in on_path:
            return path[path.index(node):] + [node]
        if node in done or node not in aliases:
            return None
        path.append(node)
        on_path.add(node)
        for target in aliases[node]:
            found = visit(target)
            if found:
                return found
        path.pop()
        on_path.discard(node)
        done.add(node)
        return None

    return visit(start)


# --- DNs -------------------------------------------------------------------------------------
def service_dn(cfg: DirectoryConfig) -> str:
    """The platform's read-only account (devstack.mail_service_dn grants its ACL)."""
    return f"cn=mail,ou=system,{cfg.base_dn}"


def mail_container_dn(cfg: DirectoryConfig, institution: str) -> str:
    """Where an institution's mailboxes and aliases live."""
    return f"ou=mail,{_institution_dn(cfg, _check_acronym(institution))}"


def _entry_dn(cfg: DirectoryConfig, institution: str, address: str) -> str:
    return f"mail={escape_rdn(address)},{mail_container_dn(cfg, institution)}"


# --- helpers ---------------------------------------------------------------------------------
def _domain_of(conn: ldap3.Connection, cfg: DirectoryConfig, institution: str) -> str | None:
    attrs = _get(conn, mail_container_dn(cfg, institution), ["mailDomain"])
    return (_first(attrs, "mailDomain").lower() or None) if attrs is not None else None


def _require_domain(conn: ldap3.Connection, cfg: DirectoryConfig, institution: str,
                    address: str) -> None:
    domain = _domain_of(conn, cfg, institution)
    if domain is None:
        raise ValueError(f"institution {institution} has no mail domain yet "
                         "(ensure_mail_domain first)")
    if address.split("@")[1] != domain:
        raise ValueError(f"{address} is not in {institution}'s mail domain {domain}")


def _entries(conn: ldap3.Connection, cfg: DirectoryConfig, institution: str,
             flt: str) -> list[tuple[str, dict]]:
    return _search(conn, mail_container_dn(cfg, institution), flt,
                   ["mail", "mailQuotaBytes", "mailEnabled", "mailAliasTarget", "objectClass"],
                   scope=ldap3.LEVEL)


def _kind(attrs: dict) -> str:
    classes = {str(c).lower() for c in _values(attrs, "objectClass")}
    return "mailbox" if "comgovmailbox" in classes else \
        "alias" if "comgovmailalias" in classes else "other"


def _find(conn: ldap3.Connection, cfg: DirectoryConfig, institution: str,
          address: str) -> tuple[str, dict] | None:
    flt = f"(mail={escape_filter_chars(address)})"
    found = _entries(conn, cfg, institution, flt)
    return found[0] if found else None


def _aliases(conn: ldap3.Connection, cfg: DirectoryConfig,
             institution: str) -> dict[str, tuple[str, list[str]]]:
    """address -> (dn, targets) for every alias of the institution."""
    return {_first(a, "mail").lower(): (dn, [str(t).lower() for t in _values(a, "mailAliasTarget")])
            for dn, a in _entries(conn, cfg, institution, "(objectClass=comgovMailAlias)")}


def _drop_target(conn: ldap3.Connection, cfg: DirectoryConfig, institution: str,
                 address: str) -> None:
    """Take a removed address out of every alias; an alias left with no target goes too."""
    for alias, (dn, targets) in _aliases(conn, cfg, institution).items():
        if address not in targets:
            continue
        rest = [t for t in targets if t != address]
        if rest:
            done = conn.modify(dn, {"mailAliasTarget": [(ldap3.MODIFY_REPLACE, rest)]})
            _ok(conn, done, "modify", dn)
            log.info("event=mail.alias.target_drop alias=%s target=%s", alias, address)
        else:
            _ok(conn, conn.delete(dn), "delete", dn, allowed=(32,))
            log.info("event=mail.alias.remove alias=%s reason=no_target_left", alias)
            _drop_target(conn, cfg, institution, alias)


# --- public API ------------------------------------------------------------------------------
def ensure_mail_service_account(cfg: DirectoryConfig, password: str) -> str:
    """Create or re-assert the platform's bind account; returns its DN."""
    validate_service_password(password)
    dn = service_dn(cfg)
    with _admin(cfg) as conn:
        _ensure_ou(conn, f"ou=system,{cfg.base_dn}", "system")
        current = _get(conn, dn, ["userPassword"])
        attrs: dict[str, list[str]] = {}
        if current is None or not any(_ssha_matches(v, password)
                                      for v in _values(current, "userPassword")):
            attrs["userPassword"] = [hash_password(password)]
        _ensure_entry(conn, dn, ["top", "applicationProcess", "simpleSecurityObject"],
                      {"cn": "mail"}, attrs)
    log.info("event=mail.service_account.ensure dn=%s", dn)
    return dn


def mail_domain(cfg: DirectoryConfig, institution: str) -> str | None:
    """The institution's mail domain, or None when it has none yet."""
    _check_acronym(institution)
    with _admin(cfg) as conn:
        return _domain_of(conn, cfg, institution)


def ensure_mail_domain(cfg: DirectoryConfig, institution: str, domain: str) -> str:
    """Give an institution its (single) mail domain; refuse one that another institution holds."""
    _check_acronym(institution)
    domain = validate_domain(domain)
    dn = mail_container_dn(cfg, institution)
    with _admin(cfg) as conn:
        if _get(conn, _institution_dn(cfg, institution)) is None:
            raise ValueError(f"unknown institution {institution!r}")
        holders = _search(conn, f"ou=institutions,{cfg.base_dn}",
                          f"(&(objectClass=comgovMailDomain)"
                          f"(mailDomain={escape_filter_chars(domain)}))", ["mailDomain"])
        others = [h for h, _ in holders if h.lower() != dn.lower()]
        if others:
            raise ValueError(f"mail domain {domain} already belongs to {others[0]}")
        current = _domain_of(conn, cfg, institution)
        if current not in (None, domain) and _entries(conn, cfg, institution, "(mail=*)"):
            raise ValueError(f"{institution} still has mailboxes or aliases in {current}; "
                             "remove them before changing its mail domain")
        _ensure_entry(conn, dn, ["top", "organizationalUnit", "comgovMailDomain"],
                      {"ou": "mail"}, {"mailDomain": [domain]})
    log.info("event=mail.domain.ensure institution=%s domain=%s", institution, domain)
    return dn


def ensure_mailbox(cfg: DirectoryConfig, institution: str, address: str, password: str,
                   quota_bytes: int, enabled: bool = True) -> str:
    """Create or re-assert a mailbox (password, quota, enabled); returns its DN."""
    address = validate_address(address)
    _check_password(password)
    validate_quota(quota_bytes)
    dn = _entry_dn(cfg, institution, address)
    with _admin(cfg) as conn:
        _require_domain(conn, cfg, institution, address)
        existing = _find(conn, cfg, institution, address)
        if existing is not None and _kind(existing[1]) != "mailbox":
            raise ValueError(f"{address} is already an alias")
        current = _get(conn, dn, ["userPassword"]) if existing is not None else None
        attrs = {"mailQuotaBytes": [str(quota_bytes)],
                 "mailEnabled": ["TRUE" if enabled else "FALSE"]}
        if current is None or not any(_ssha_matches(v, password)
                                      for v in _values(current, "userPassword")):
            attrs["userPassword"] = [hash_password(password)]
        _ensure_entry(conn, dn, MAILBOX_CLASSES, {"mail": address}, attrs)
    log.info("event=mail.mailbox.ensure institution=%s address=%s quota=%d enabled=%s "
             "created=%s", institution, address, quota_bytes, enabled, existing is None)
    return dn


def _modify_mailbox(cfg: DirectoryConfig, institution: str, address: str,
                    changes: dict[str, list[str]], event: str) -> None:
    address = validate_address(address)
    with _admin(cfg) as conn:
        found = _find(conn, cfg, institution, address)
        if found is None or _kind(found[1]) != "mailbox":
            raise DirectoryError(f"no mailbox {address} in {institution}")
        mods = {k: [(ldap3.MODIFY_REPLACE, v)] for k, v in changes.items()}
        _ok(conn, conn.modify(found[0], mods), event, found[0])
    log.info("event=mail.mailbox.%s institution=%s address=%s", event, institution, address)


def set_mailbox_password(cfg: DirectoryConfig, institution: str, address: str,
                         password: str) -> None:
    """Replace a mailbox password (takes effect at the next login: Dovecot caches nothing)."""
    _check_password(password)
    _modify_mailbox(cfg, institution, address, {"userPassword": [hash_password(password)]},
                    "set_password")


def disable_mailbox(cfg: DirectoryConfig, institution: str, address: str) -> None:
    """Refuse logins and new mail to a mailbox; its stored mail is kept."""
    _modify_mailbox(cfg, institution, address, {"mailEnabled": ["FALSE"]}, "disable")


def enable_mailbox(cfg: DirectoryConfig, institution: str, address: str) -> None:
    """Undo disable_mailbox."""
    _modify_mailbox(cfg, institution, address, {"mailEnabled": ["TRUE"]}, "enable")


def remove_mailbox(cfg: DirectoryConfig, institution: str, address: str) -> None:
    """Delete a mailbox entry and take it out of the aliases; a missing one is success.

    The maildir stays on the volume (provisioners.mail.platform.purge_mailbox_storage deletes it).
    """
    _remove_entry(cfg, institution, address, "mailbox")


def _remove_entry(cfg: DirectoryConfig, institution: str, address: str, kind: str) -> None:
    """Delete a mailbox or alias of `kind`, and drop it from every alias that targets it."""
    address = validate_address(address)
    with _admin(cfg) as conn:
        found = _find(conn, cfg, institution, address)
        if found is not None:
            if _kind(found[1]) != kind:
                other = "alias" if kind == "mailbox" else "mailbox"
                raise ValueError(f"{address} is a {other}, not a{'n' if kind == 'alias' else ''} "
                                 f"{kind}")
            _ok(conn, conn.delete(found[0]), "delete", found[0], allowed=(32,))
        _drop_target(conn, cfg, institution, address)
    log.info("event=mail.%s.remove institution=%s address=%s found=%s", kind, institution,
             address, found is not None)


def ensure_alias(cfg: DirectoryConfig, institution: str, address: str,
                 targets: list[str]) -> str:
    """Create or re-assert an alias; targets must be this institution's and must not loop."""
    address = validate_address(address)
    if isinstance(targets, str) or not targets or len(targets) > MAX_ALIAS_TARGETS:
        raise ValueError(f"an alias needs 1-{MAX_ALIAS_TARGETS} target addresses (a list)")
    wanted = sorted({validate_address(t) for t in targets})
    dn = _entry_dn(cfg, institution, address)
    with _admin(cfg) as conn:
        _require_domain(conn, cfg, institution, address)
        existing = _find(conn, cfg, institution, address)
        if existing is not None and _kind(existing[1]) != "alias":
            raise ValueError(f"{address} is already a mailbox")
        known = {_first(a, "mail").lower(): _kind(a)
                 for _dn, a in _entries(conn, cfg, institution, "(mail=*)")}
        for target in wanted:
            if target == address:
                raise ValueError(f"alias loop: {address} cannot deliver to itself")
            if target not in known:
                raise ValueError(f"alias target {target} is not a mailbox or alias of "
                                 f"{institution}")
        graph = {a: t for a, (_d, t) in _aliases(conn, cfg, institution).items()}
        graph[address] = wanted
        loop = find_alias_loop(graph, address)
        if loop:
            raise ValueError("alias loop: " + " -> ".join(loop))
        _ensure_entry(conn, dn, ALIAS_CLASSES, {"mail": address}, {"mailAliasTarget": wanted})
    log.info("event=mail.alias.ensure institution=%s address=%s targets=%d",
             institution, address, len(wanted))
    return dn


def remove_alias(cfg: DirectoryConfig, institution: str, address: str) -> None:
    """Delete an alias (and take it out of other aliases); a missing one is success."""
    _remove_entry(cfg, institution, address, "alias")


def list_mailboxes(cfg: DirectoryConfig, institution: str) -> list[Mailbox]:
    """The institution's mailboxes, sorted by address (empty when it has no mail yet)."""
    with _admin(cfg) as conn:
        entries = _entries(conn, cfg, institution, "(objectClass=comgovMailbox)")
    return sorted((Mailbox(address=_first(a, "mail").lower(),
                           quota_bytes=int(_first(a, "mailQuotaBytes") or 0),
                           enabled=_first(a, "mailEnabled").upper() == "TRUE", dn=dn)
                   for dn, a in entries), key=lambda m: m.address)


def list_aliases(cfg: DirectoryConfig, institution: str) -> list[MailAlias]:
    """The institution's aliases with their targets, sorted by address."""
    with _admin(cfg) as conn:
        aliases = _aliases(conn, cfg, institution)
    return [MailAlias(address=a, targets=tuple(sorted(t)), dn=dn)
            for a, (dn, t) in sorted(aliases.items())]


def remove_mail_domain(cfg: DirectoryConfig, institution: str) -> None:
    """Delete an institution's whole mail subtree (mailboxes, aliases, domain)."""
    dn = mail_container_dn(cfg, institution)
    with _admin(cfg) as conn:
        for child, _attrs in _search(conn, dn, "(objectClass=*)", scope=ldap3.LEVEL):
            _ok(conn, conn.delete(child), "delete", child, allowed=(32,))
        _ok(conn, conn.delete(dn), "delete", dn, allowed=(32,))
    log.info("event=mail.domain.remove institution=%s", institution)
