"""LDAP identities of services: a bind account per service and a group of people managing it.

Layout under an institution (``ou=<ACRONYM>,ou=institutions,<base>``)::

    ou=services   uid=svc-<service_id>               (account + simpleSecurityObject)
    ou=groups     cn=svc-<service_id>-managers       (groupOfNames; admin DN as placeholder)

A service account is not an ``inetOrgPerson``, so it can never log into the control
plane; only people of the same institution can manage its service. Usage::

    ensure_service_account(cfg, "MSPLS", 42, generated_password, "DHIS2 du ministère")
    add_manager(cfg, "MSPLS", 42, "jean.ndayishimiye")
    disable_person_everywhere(cfg, "jean.ndayishimiye")   # one action: locked, in no group
"""
from __future__ import annotations

import logging
import re

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from provisioners.directory import tree as directory
from provisioners.directory.tree import (  # noqa: F401 - shared private helpers
    _COMM_ERRORS,
    DirectoryConfig,
    DirectoryError,
    DirectoryUnavailable,
    _admin,
    _norm,
    _ok,
    _search,
)

log = logging.getLogger(__name__)

_ACRONYM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")  # as provisioners.directory.tree
_UID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_MAX_PASSWORD = 1024
_ACCOUNT_CLASSES = ["top", "account", "simpleSecurityObject"]


# --- names -----------------------------------------------------------------------------------
def institution_dn(cfg: DirectoryConfig, institution: str) -> str:
    """The institution's subtree (the one provisioners.directory.tree creates)."""
    return f"ou={escape_rdn(_check_acronym(institution))},ou=institutions,{cfg.base_dn}"


def service_account_dn(cfg: DirectoryConfig, institution: str, service_id: int) -> str:
    """DN the service (its application) binds as."""
    return (f"uid=svc-{_check_service_id(service_id)},ou=services,"
            f"{institution_dn(cfg, institution)}")


def managers_group_dn(cfg: DirectoryConfig, institution: str, service_id: int) -> str:
    """DN of the group of people who may manage the service."""
    return (f"cn=svc-{_check_service_id(service_id)}-managers,ou=groups,"
            f"{institution_dn(cfg, institution)}")


# --- validation ------------------------------------------------------------------------------
def _check_acronym(acronym: str) -> str:
    if not isinstance(acronym, str) or _ACRONYM_RE.fullmatch(acronym) is None:
        raise ValueError("institution acronym must be 1-32 letters, digits, '-' or '_'")
    return acronym


def _check_service_id(service_id: int) -> int:
    if isinstance(service_id, bool) or not isinstance(service_id, int) or service_id <= 0:
        raise ValueError(f"invalid service id {service_id!r}")
    return service_id


def _check_uid(uid: str) -> str:
    if not isinstance(uid, str) or _UID_RE.fullmatch(uid) is None:
        raise ValueError("uid must be 1-64 letters, digits, '.', '-' or '_'")
    return uid


def _check_description(text: str) -> str:
    if not isinstance(text, str) or not text.strip() or len(text) > 256 \
            or _CONTROL_RE.search(text):
        raise ValueError("description must be 1-256 printable characters")
    if text.strip().lower() == directory.DISABLED_MARK:
        raise ValueError(f"description {text!r} is reserved (it marks disabled accounts)")
    return text.strip()


# --- LDAP helpers (the directory module's, so errors read the same everywhere) ---------
def _exists(conn: ldap3.Connection, dn: str) -> bool:
    return bool(_search(conn, dn, "(objectClass=*)", scope=ldap3.BASE))


def _groups_of(conn: ldap3.Connection, cfg: DirectoryConfig, dn: str) -> list[str]:
    return sorted(directory._groups_of(conn, cfg, dn))


def _find_person(conn: ldap3.Connection, cfg: DirectoryConfig,
                 uid: str) -> tuple[str, dict] | None:
    flt = f"(&(objectClass=inetOrgPerson)(uid={escape_filter_chars(uid)}))"
    found = _search(conn, cfg.base_dn, flt, ["description"])
    if len(found) > 1:
        raise DirectoryError(f"uid {uid} is not unique in the directory ({len(found)} entries)")
    return found[0] if found else None


def _password_works(cfg: DirectoryConfig, dn: str, password: str) -> bool:
    """Bind as the account: the one check that matches what the application will do."""
    server = ldap3.Server(cfg.url, connect_timeout=cfg.timeout, get_info=ldap3.NONE)
    conn = ldap3.Connection(server, user=dn, password=password, receive_timeout=cfg.timeout,
                            raise_exceptions=False)
    try:
        return bool(conn.bind())
    except _COMM_ERRORS as exc:
        raise DirectoryUnavailable(f"directory unreachable at {cfg.url}") from exc
    finally:
        try:
            conn.unbind()
        except LDAPException:
            pass


# --- public API ------------------------------------------------------------------------------
def ensure_service_account(cfg: DirectoryConfig, institution: str, service_id: int,
                           password: str, description: str) -> str:
    """Create or re-assert the service's bind account and its managers group; return its DN."""
    dn = service_account_dn(cfg, institution, service_id)
    group = managers_group_dn(cfg, institution, service_id)
    description = _check_description(description)
    if not isinstance(password, str) or not password or len(password) > _MAX_PASSWORD \
            or "\x00" in password:
        raise ValueError(f"password must be 1-{_MAX_PASSWORD} characters without NUL")
    inst = institution_dn(cfg, institution)
    with _admin(cfg) as conn:
        if not _exists(conn, inst):
            raise ValueError(f"unknown institution {institution!r}")
        for ou in ("services", "groups"):
            if not _exists(conn, f"ou={ou},{inst}"):
                done = conn.add(f"ou={ou},{inst}", ["top", "organizationalUnit"], {"ou": ou})
                _ok(conn, done, "add", f"ou={ou},{inst}", allowed=(68,))
        found = _search(conn, dn, "(objectClass=*)", ["objectClass", "description"],
                        scope=ldap3.BASE)
        if not found:
            done = conn.add(dn, _ACCOUNT_CLASSES, {
                "uid": f"svc-{service_id}", "description": description,
                "userPassword": directory.hash_password(password)})
            _ok(conn, done, "add", dn)
            log.info("event=directory.service.add dn=%s", dn)
        else:
            attrs = found[0][1]
            changes: dict[str, list] = {}
            have = {str(c).lower() for c in attrs.get("objectClass", [])}
            missing = [c for c in _ACCOUNT_CLASSES[1:] if c.lower() not in have]
            if missing:
                changes["objectClass"] = [(ldap3.MODIFY_ADD, missing)]
            if [str(v) for v in attrs.get("description", [])] != [description]:
                changes["description"] = [(ldap3.MODIFY_REPLACE, [description])]
            if not _password_works(cfg, dn, password):
                changes["userPassword"] = [(ldap3.MODIFY_REPLACE,
                                            [directory.hash_password(password)])]
            if changes:
                _ok(conn, conn.modify(dn, changes), "modify", dn)
                log.info("event=directory.service.reassert dn=%s attrs=%s",
                         dn, ",".join(sorted(changes)))
        if not _exists(conn, group):
            done = conn.add(group, ["top", "groupOfNames"], {
                "cn": f"svc-{service_id}-managers", "member": [cfg.admin_dn],
                "description": f"managers of service {service_id}"})
            _ok(conn, done, "add", group, allowed=(68,))
            log.info("event=directory.service.group_add dn=%s", group)
    log.info("event=directory.service.ensure institution=%s service=%s", institution, service_id)
    return dn


def remove_service_account(cfg: DirectoryConfig, institution: str, service_id: int) -> None:
    """Delete the account and its managers group; what is already gone is success."""
    dn = service_account_dn(cfg, institution, service_id)
    group = managers_group_dn(cfg, institution, service_id)
    with _admin(cfg) as conn:
        for entry in (group, dn):
            _ok(conn, conn.delete(entry), "delete", entry, allowed=(32,))
    log.info("event=directory.service.remove institution=%s service=%s", institution, service_id)


def _person_of(conn: ldap3.Connection, cfg: DirectoryConfig, institution: str,
               uid: str) -> str:
    """DN of an enabled person of this institution, or a ValueError saying why not."""
    found = _find_person(conn, cfg, uid)
    people = _norm(f"ou=people,{institution_dn(cfg, institution)}")
    if found is None or _norm(found[0])[1:] != people:
        raise ValueError(f"{uid} is not a person of institution {institution}: only its own "
                         "people may manage its services")
    marks = [str(v).lower() for v in found[1].get("description", [])]
    if directory.DISABLED_MARK in marks:
        raise ValueError(f"{uid} is disabled")
    return found[0]


def add_manager(cfg: DirectoryConfig, institution: str, service_id: int, uid: str) -> None:
    """Let a person of the same institution manage the service."""
    group = managers_group_dn(cfg, institution, service_id)
    _check_uid(uid)
    with _admin(cfg) as conn:
        person = _person_of(conn, cfg, institution, uid)
        if not _exists(conn, group):
            raise ValueError(f"service {service_id} of {institution} has no service account "
                             "yet (ensure_service_account first)")
        done = conn.modify(group, {"member": [(ldap3.MODIFY_ADD, [person])]})
        _ok(conn, done, "add-member", group, allowed=(20,))  # 20: already a member
    log.info("event=directory.service.manager_add service=%s uid=%s", service_id, uid)


def remove_manager(cfg: DirectoryConfig, institution: str, service_id: int, uid: str) -> None:
    """Withdraw a person's right to manage the service; not being a manager is success."""
    group = managers_group_dn(cfg, institution, service_id)
    _check_uid(uid)
    with _admin(cfg) as conn:
        found = _find_person(conn, cfg, uid)
        if found is not None:
            done = conn.modify(group, {"member": [(ldap3.MODIFY_DELETE, [found[0]])]})
            code = _ok(conn, done, "del-member", group, allowed=(16, 32, 65))
            if code == 65:  # it was the last member: put the placeholder back instead
                done = conn.modify(group, {"member": [(ldap3.MODIFY_REPLACE, [cfg.admin_dn])]})
                _ok(conn, done, "del-member", group)
    log.info("event=directory.service.manager_remove service=%s uid=%s", service_id, uid)


def list_managers(cfg: DirectoryConfig, institution: str, service_id: int) -> list[str]:
    """Uids of the people who manage the service (the placeholder is not one)."""
    group = managers_group_dn(cfg, institution, service_id)
    with _admin(cfg) as conn:
        found = _search(conn, group, "(objectClass=groupOfNames)", ["member"], scope=ldap3.BASE)
        members = [str(m) for m in (found[0][1].get("member", []) if found else [])]
        uids = []
        for member in members:
            if _norm(member) == _norm(cfg.admin_dn):
                continue
            entry = _search(conn, member, "(objectClass=inetOrgPerson)", ["uid"],
                            scope=ldap3.BASE)
            if entry:
                uids.extend(str(u) for u in entry[0][1].get("uid", [])[:1])
    return sorted(uids)


def disable_person_everywhere(cfg: DirectoryConfig, uid: str) -> list[str]:
    """Lock a person and take them out of every group at once; return the groups they left."""
    _check_uid(uid)
    with _admin(cfg) as conn:
        found = _find_person(conn, cfg, uid)
        before = _groups_of(conn, cfg, found[0]) if found else []
    if found is None:
        log.info("event=directory.person.disable_everywhere uid=%s found=False", uid)
        return []
    directory.disable_person(cfg, uid)  # locks the password, drops every groupOfNames
    with _admin(cfg) as conn:
        remaining = _groups_of(conn, cfg, found[0])
    if remaining:
        directory.remove_from_all_groups(cfg, uid)
        with _admin(cfg) as conn:
            remaining = _groups_of(conn, cfg, found[0])
    if remaining:
        raise DirectoryError(f"{uid} is still a member of {', '.join(remaining)}")
    log.info("event=directory.person.disable_everywhere uid=%s groups=%d", uid, len(before))
    return before
