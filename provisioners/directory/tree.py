"""OpenLDAP directory of people and roles, kept convergent so any call can safely be repeated."""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import ldap3
from ldap3.core.exceptions import (
    LDAPCommunicationError,
    LDAPException,
    LDAPMaximumRetriesError,
    LDAPResponseTimeoutError,
)
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

log = logging.getLogger(__name__)

ROLES = ("focal_point", "operator", "auditor")
ROLE_PRIORITY = ("operator", "auditor", "focal_point")  # first match wins
DISABLED_MARK = "disabled"
_UID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ACRONYM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
_MAIL_RE = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9.-]{1,189}\.[A-Za-z]{2,}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_MAX_PASSWORD = 1024
_UNAVAILABLE_RESULTS = {51, 52, 80}  # busy, unavailable, other (server-side trouble)
_COMM_ERRORS = (LDAPCommunicationError, LDAPResponseTimeoutError, LDAPMaximumRetriesError,
                TimeoutError)
_PERSON_FILTER = "(&(objectClass=inetOrgPerson)(uid={}))"


@dataclass(frozen=True)
class DirectoryConfig:
    url: str
    base_dn: str
    admin_dn: str
    admin_password: str
    timeout: int = 5


@dataclass(frozen=True)
class Identity:
    dn: str
    uid: str
    full_name: str
    mail: str
    role: str  # focal_point | operator | auditor
    institution: str | None  # acronym for focal points
    disabled: bool = False


class DirectoryError(Exception):
    """Base class so callers can catch every directory failure at once."""


class DirectoryUnavailable(DirectoryError):
    """The server is down, too slow, or refuses the service account."""


class InvalidCredentials(DirectoryError):
    """Unknown user or wrong password; one message so usernames cannot be probed."""

    def __init__(self, message: str = "invalid username or password") -> None:
        super().__init__(message)


class NoRole(DirectoryError):
    """The password was right but the person holds no role in the control plane."""


# --- DNs -------------------------------------------------------------------------------------
def _institution_dn(cfg: DirectoryConfig, acronym: str) -> str:
    return f"ou={escape_rdn(acronym)},ou=institutions,{cfg.base_dn}"


def _focal_group_dn(cfg: DirectoryConfig, acronym: str) -> str:
    return f"cn=focal-points,ou=groups,{_institution_dn(cfg, acronym)}"


def _role_location(cfg: DirectoryConfig, role: str, institution: str | None) -> tuple[str, str]:
    """Return (container dn, group dn) for a role, the single source of the tree layout."""
    if role == "operator":
        return f"ou=staff,{cfg.base_dn}", f"cn=operators,ou=groups,{cfg.base_dn}"
    if role == "auditor":
        return f"ou=auditors,{cfg.base_dn}", f"cn=auditors,ou=groups,{cfg.base_dn}"
    assert institution is not None
    return f"ou=people,{_institution_dn(cfg, institution)}", _focal_group_dn(cfg, institution)


def _norm(dn: str) -> tuple[tuple[str, str], ...]:
    """Normalise a DN for comparison (case and spacing do not matter in our tree)."""
    try:
        return tuple((a.lower(), v.lower()) for a, v, _ in parse_dn(dn, strip=True))
    except LDAPException:
        return ((dn.lower(), ""),)


def _classify(cfg: DirectoryConfig, dn: str, group: bool) -> tuple[str, str | None] | None:
    """Role (and institution) a person entry's location or a group DN stands for."""
    norm = _norm(dn) if group else _norm(dn)[1:]
    for role in ("operator", "auditor"):
        if norm == _norm(_role_location(cfg, role, None)[int(group)]):
            return role, None
    head = (("cn", "focal-points"), ("ou", "groups")) if group else (("ou", "people"),)
    tail = norm[len(head) + 1:]
    if norm[:len(head)] == head and tail == _norm(f"ou=institutions,{cfg.base_dn}"):
        return "focal_point", parse_dn(dn, strip=True)[2][1]
    return None


# --- validation ------------------------------------------------------------------------------
def _check_uid(uid: str) -> str:
    if not isinstance(uid, str) or not _UID_RE.fullmatch(uid):
        raise ValueError("uid must be 1-64 letters, digits, '.', '-' or '_'")
    return uid


def _check_acronym(acronym: str) -> str:
    if not isinstance(acronym, str) or not _ACRONYM_RE.fullmatch(acronym):
        raise ValueError("institution acronym must be 1-32 letters, digits, '-' or '_'")
    return acronym


def _check_text(value: str, what: str, limit: int = 256) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit \
            or _CONTROL_RE.search(value):
        raise ValueError(f"{what} must be 1-{limit} printable characters")
    return value.strip()


def _check_password(password: str) -> str:
    if not isinstance(password, str) or not password or len(password) > _MAX_PASSWORD:
        raise ValueError(f"password must be 1-{_MAX_PASSWORD} characters")
    return password


# --- password hashes -------------------------------------------------------------------------
def hash_password(password: str) -> str:
    """Salted SHA-1 ({SSHA}) because it is what stock slapd verifies without extra modules."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


def _ssha_matches(stored: object, password: str) -> bool:
    """Compare a stored {SSHA} value with a password so unchanged passwords are not rewritten."""
    text = stored.decode("utf-8", "replace") if isinstance(stored, bytes) else str(stored)
    if not text.upper().startswith("{SSHA}"):
        return False
    try:
        raw = base64.b64decode(text[6:], validate=True)
    except ValueError:
        return False
    digest, salt = raw[:20], raw[20:]
    return hmac.compare_digest(hashlib.sha1(password.encode("utf-8") + salt).digest(), digest)


# --- connections and low-level helpers -------------------------------------------------------
def _server(cfg: DirectoryConfig) -> ldap3.Server:
    return ldap3.Server(cfg.url, connect_timeout=cfg.timeout, get_info=ldap3.NONE)


def _unbind(conn: ldap3.Connection) -> None:
    try:
        conn.unbind()
    except LDAPException:
        pass


def admin_connection(cfg: DirectoryConfig) -> ldap3.Connection:
    """Open a bound service-account connection; the caller must unbind it."""
    if not cfg.admin_password:
        raise DirectoryUnavailable("directory admin password is not configured")
    conn = ldap3.Connection(_server(cfg), user=cfg.admin_dn, password=cfg.admin_password,
                            receive_timeout=cfg.timeout, raise_exceptions=False)
    try:
        ok = conn.bind()
    except _COMM_ERRORS as exc:
        _unbind(conn)
        log.error("event=directory.unavailable url=%s error=%s", cfg.url, type(exc).__name__)
        raise DirectoryUnavailable(f"directory unreachable at {cfg.url}") from exc
    if not ok:
        desc = conn.result.get("description")
        _unbind(conn)
        log.error("event=directory.admin_bind_rejected url=%s result=%s", cfg.url, desc)
        raise DirectoryUnavailable(f"directory refused the service account ({desc})")
    return conn


@contextmanager
def _admin(cfg: DirectoryConfig) -> Iterator[ldap3.Connection]:
    """Admin connection, always unbound; socket trouble becomes DirectoryUnavailable."""
    conn = admin_connection(cfg)
    try:
        yield conn
    except _COMM_ERRORS as exc:
        log.error("event=directory.unavailable url=%s error=%s", cfg.url, type(exc).__name__)
        raise DirectoryUnavailable(f"directory connection lost ({type(exc).__name__})") from exc
    finally:
        _unbind(conn)


def _ok(conn: ldap3.Connection, done: bool, op: str, dn: str,
        allowed: tuple[int, ...] = ()) -> int:
    """Raise DirectoryError unless the last operation succeeded or ended in an allowed code."""
    code = int(conn.result.get("result", -1))
    if done or code == 0 or code in allowed:
        return code
    if code in _UNAVAILABLE_RESULTS:
        raise DirectoryUnavailable(f"{op} {dn}: {conn.result.get('description')}")
    raise DirectoryError(f"{op} {dn} failed: {conn.result.get('description')} "
                         f"{conn.result.get('message') or ''}".strip())


def _search(conn: ldap3.Connection, base: str, flt: str, attrs: list[str] | None = None,
            scope: str = ldap3.SUBTREE) -> list[tuple[str, dict]]:
    """Search and return (dn, attributes) pairs; a missing base yields no entries."""
    done = conn.search(base, flt, search_scope=scope, attributes=attrs or [])
    if _ok(conn, done, "search", base, allowed=(32,)) == 32:
        return []
    return [(r["dn"], dict(r.get("attributes", {}))) for r in conn.response or []
            if r.get("type") == "searchResEntry"]


def _get(conn: ldap3.Connection, dn: str, attrs: list[str] | None = None) -> dict | None:
    found = _search(conn, dn, "(objectClass=*)", attrs, scope=ldap3.BASE)
    return found[0][1] if found else None


def _values(attrs: dict, name: str) -> list:
    value = attrs.get(name)
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def _first(attrs: dict, name: str) -> str:
    vals = _values(attrs, name) or [""]
    return vals[0].decode("utf-8", "replace") if isinstance(vals[0], bytes) else str(vals[0])


def _ensure_entry(conn: ldap3.Connection, dn: str, classes: list[str],
                  rdn_attrs: dict[str, str], attrs: dict[str, list[str]]) -> bool:
    """Create an entry or re-assert drifted attributes; return True when it was created."""
    current = _get(conn, dn, ["objectClass", *attrs])
    if current is None:
        full = {**{k: [v] for k, v in rdn_attrs.items()}, **attrs}
        _ok(conn, conn.add(dn, classes, full), "add", dn)
        log.info("event=directory.entry.add dn=%s", dn)
        return True
    changes: dict[str, list] = {}
    have_classes = {str(c).lower() for c in _values(current, "objectClass")}
    missing = [c for c in classes if c.lower() not in have_classes and c != "top"]
    if missing:
        changes["objectClass"] = [(ldap3.MODIFY_ADD, missing)]
    for name, wanted in attrs.items():
        if sorted(str(v) for v in _values(current, name)) != sorted(wanted):
            changes[name] = [(ldap3.MODIFY_REPLACE, wanted)]
    if changes:
        _ok(conn, conn.modify(dn, changes), "modify", dn)
        log.info("event=directory.entry.reassert dn=%s attrs=%s", dn, ",".join(sorted(changes)))
    return False


def _ensure_ou(conn: ldap3.Connection, dn: str, name: str, description: str | None = None) -> None:
    attrs = {"description": [description]} if description else {}
    _ensure_entry(conn, dn, ["top", "organizationalUnit"], {"ou": name}, attrs)


def _ensure_group(conn: ldap3.Connection, cfg: DirectoryConfig, dn: str, name: str) -> None:
    """groupOfNames needs a member: the admin DN is kept as a placeholder and ignored."""
    if _get(conn, dn, ["cn"]) is None:
        done = conn.add(dn, ["top", "groupOfNames"], {"cn": [name], "member": [cfg.admin_dn]})
        _ok(conn, done, "add", dn)
        log.info("event=directory.group.add dn=%s", dn)
    else:
        _add_member(conn, dn, cfg.admin_dn)


def _add_member(conn: ldap3.Connection, group_dn: str, member_dn: str) -> None:
    done = conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [member_dn])]})
    if _ok(conn, done, "add-member", group_dn, allowed=(20,)) == 0:  # 20: already there
        log.info("event=directory.group.member_add group=%s member=%s", group_dn, member_dn)


def _groups_of(conn: ldap3.Connection, cfg: DirectoryConfig, dn: str) -> list[str]:
    flt = f"(&(objectClass=groupOfNames)(member={escape_filter_chars(dn)}))"
    return [g for g, _ in _search(conn, cfg.base_dn, flt)]


def _drop_memberships(conn: ldap3.Connection, cfg: DirectoryConfig, dn: str,
                      keep: str | None = None) -> None:
    """Remove a DN from every group except `keep`, never leaving a group without a member."""
    for group in _groups_of(conn, cfg, dn):
        if keep is not None and _norm(group) == _norm(keep):
            continue
        done = conn.modify(group, {"member": [(ldap3.MODIFY_DELETE, [dn])]})
        code = _ok(conn, done, "del-member", group, allowed=(16, 65))
        if code == 65:  # it was the last member: restore the placeholder instead
            done = conn.modify(group, {"member": [(ldap3.MODIFY_REPLACE, [cfg.admin_dn])]})
            _ok(conn, done, "del-member", group)
        log.info("event=directory.group.member_remove group=%s member=%s", group, dn)


def _find_person(conn: ldap3.Connection, cfg: DirectoryConfig, uid: str,
                 attrs: list[str] | None = None) -> tuple[str, dict] | None:
    found = _search(conn, cfg.base_dn, _PERSON_FILTER.format(escape_filter_chars(uid)), attrs)
    if len(found) > 1:
        raise DirectoryError(f"uid {uid} is not unique in the directory ({len(found)} entries)")
    return found[0] if found else None


# --- public API ------------------------------------------------------------------------------
def ensure_tree(cfg: DirectoryConfig) -> None:
    """Create the base entry, the containers and the global role groups if missing."""
    attr, value, _ = parse_dn(cfg.base_dn, strip=True)[0]
    kinds = {"dc": (["top", "dcObject", "organization"], {"o": [value]}),
             "o": (["top", "organization"], {}),
             "ou": (["top", "organizationalUnit"], {})}
    if attr.lower() not in kinds:
        raise ValueError(f"unsupported base DN {cfg.base_dn!r} (must start with dc=, o= or ou=)")
    classes, extra = kinds[attr.lower()]
    with _admin(cfg) as conn:
        if _get(conn, cfg.base_dn) is None:
            _ok(conn, conn.add(cfg.base_dn, classes, {attr: [value], **extra}), "add", cfg.base_dn)
            log.info("event=directory.entry.add dn=%s", cfg.base_dn)
        for ou in ("institutions", "staff", "auditors", "groups"):
            _ensure_ou(conn, f"ou={ou},{cfg.base_dn}", ou)
        for cn in ("operators", "auditors"):
            _ensure_group(conn, cfg, f"cn={cn},ou=groups,{cfg.base_dn}", cn)
    log.info("event=directory.tree.ensure base=%s", cfg.base_dn)


def _ensure_institution_children(conn: ldap3.Connection, cfg: DirectoryConfig, acr: str) -> None:
    inst = _institution_dn(cfg, acr)
    _ensure_ou(conn, f"ou=people,{inst}", "people")
    _ensure_ou(conn, f"ou=groups,{inst}", "groups")
    _ensure_group(conn, cfg, _focal_group_dn(cfg, acr), "focal-points")


def ensure_institution(cfg: DirectoryConfig, acronym: str, name: str) -> str:
    """Create or re-assert an institution subtree (description = its full name)."""
    acronym = _check_acronym(acronym)
    name = _check_text(name, "institution name")
    dn = _institution_dn(cfg, acronym)
    with _admin(cfg) as conn:
        _ensure_ou(conn, dn, acronym, name)
        _ensure_institution_children(conn, cfg, acronym)
    log.info("event=directory.institution.ensure institution=%s", acronym)
    return dn


def ensure_person(cfg: DirectoryConfig, *, uid: str, full_name: str, mail: str, password: str,
                  role: str, institution: str | None = None) -> str:
    """Create, move or re-assert a person so entry, password and single role group match."""
    uid = _check_uid(uid)
    full_name = _check_text(full_name, "full name")
    if not isinstance(mail, str) or len(mail) > 254 or not _MAIL_RE.fullmatch(mail):
        raise ValueError("mail is not a valid e-mail address")
    _check_password(password)
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
    if role == "focal_point":
        if institution is None:
            raise ValueError("a focal_point needs an institution")
        _check_acronym(institution)
    elif institution is not None:
        raise ValueError(f"role {role} does not belong to an institution")
    container, group = _role_location(cfg, role, institution)
    dn = f"uid={escape_rdn(uid)},{container}"
    attrs = {"cn": [full_name], "sn": [full_name.split()[-1]], "displayName": [full_name],
             "mail": [mail]}
    with _admin(cfg) as conn:
        if role == "focal_point":
            if _get(conn, _institution_dn(cfg, institution)) is None:
                raise ValueError(f"unknown institution {institution!r}")
            _ensure_institution_children(conn, cfg, institution)
        existing = _find_person(conn, cfg, uid, ["userPassword", "description"])
        if existing is not None and _norm(existing[0]) != _norm(dn):
            _drop_memberships(conn, cfg, existing[0])
            done = conn.modify_dn(existing[0], f"uid={escape_rdn(uid)}", new_superior=container)
            _ok(conn, done, "move", existing[0])
            log.info("event=directory.person.move uid=%s from=%s to=%s", uid, existing[0], dn)
        old = existing[1] if existing is not None else {}
        if not any(_ssha_matches(v, password) for v in _values(old, "userPassword")):
            attrs["userPassword"] = [hash_password(password)]
        _ensure_entry(conn, dn, ["top", "person", "organizationalPerson", "inetOrgPerson"],
                      {"uid": uid}, attrs)
        if _values(old, "description"):  # only ever the disabled marker: re-enable
            _ok(conn, conn.modify(dn, {"description": [(ldap3.MODIFY_REPLACE, [])]}), "enable", dn)
        _drop_memberships(conn, cfg, dn, keep=group)
        _add_member(conn, group, dn)
    log.info("event=directory.person.ensure uid=%s role=%s institution=%s created=%s",
             uid, role, institution or "-", existing is None)
    return dn


def set_password(cfg: DirectoryConfig, uid: str, password: str) -> None:
    """Replace a password hash; a disabled person stays disabled until ensure_person."""
    _check_uid(uid)
    _check_password(password)
    with _admin(cfg) as conn:
        found = _find_person(conn, cfg, uid)
        if found is None:
            raise DirectoryError(f"no person with uid {uid}")
        done = conn.modify(found[0], {"userPassword": [(ldap3.MODIFY_REPLACE,
                                                        [hash_password(password)])]})
        _ok(conn, done, "set-password", found[0])
    log.info("event=directory.person.set_password uid=%s", uid)


def _with_person(cfg: DirectoryConfig, uid: str, event: str,
                 action: Callable[[ldap3.Connection, str], None]) -> None:
    """Run an action on a person's DN; a missing person means there is nothing to do."""
    _check_uid(uid)
    with _admin(cfg) as conn:
        found = _find_person(conn, cfg, uid)
        if found is not None:
            action(conn, found[0])
    log.info("event=directory.person.%s uid=%s found=%s", event, uid, found is not None)


def remove_from_all_groups(cfg: DirectoryConfig, uid: str) -> None:
    """Withdraw every role of a person without touching the entry itself."""
    _with_person(cfg, uid, "ungroup", lambda conn, dn: _drop_memberships(conn, cfg, dn))


def disable_person(cfg: DirectoryConfig, uid: str) -> None:
    """Lock the account (unknown random hash + marker the ACL denies) and drop its roles."""
    def action(conn: ldap3.Connection, dn: str) -> None:
        locked = hash_password(base64.b64encode(os.urandom(32)).decode())  # nobody knows it
        changes = {"userPassword": [(ldap3.MODIFY_REPLACE, [locked])],
                   "description": [(ldap3.MODIFY_REPLACE, [DISABLED_MARK])]}
        _ok(conn, conn.modify(dn, changes), "disable", dn)
        _drop_memberships(conn, cfg, dn)
    _with_person(cfg, uid, "disable", action)


def remove_person(cfg: DirectoryConfig, uid: str) -> None:
    """Delete a person and its memberships; a missing person is already removed."""
    def action(conn: ldap3.Connection, dn: str) -> None:
        _drop_memberships(conn, cfg, dn)
        _ok(conn, conn.delete(dn), "delete", dn, allowed=(32,))
    _with_person(cfg, uid, "remove", action)


def authenticate(cfg: DirectoryConfig, username: str, password: str) -> Identity:
    """Check a login against the directory and return who it is and what role it holds."""
    if not isinstance(username, str) or not _UID_RE.fullmatch(username):
        raise InvalidCredentials()
    if not isinstance(password, str) or not password or len(password) > _MAX_PASSWORD:
        raise InvalidCredentials()  # never send an empty password: it is an anonymous bind
    with _admin(cfg) as conn:
        found = _search(conn, cfg.base_dn, _PERSON_FILTER.format(escape_filter_chars(username)),
                        ["uid", "cn", "mail", "description"])
        if len(found) != 1:
            log.info("event=directory.auth.fail user=%s reason=unknown", username)
            raise InvalidCredentials()
        dn, attrs = found[0]
        if DISABLED_MARK in _first(attrs, "description").lower():
            log.info("event=directory.auth.fail user=%s reason=disabled", username)
            raise InvalidCredentials()
        user = ldap3.Connection(_server(cfg), user=dn, password=password,
                                receive_timeout=cfg.timeout, raise_exceptions=False)
        try:
            ok = user.bind()
            code = int(user.result.get("result", -1))
        finally:
            _unbind(user)
        if not ok:
            if code in _UNAVAILABLE_RESULTS:
                raise DirectoryUnavailable(f"directory refused the bind (result {code})")
            log.info("event=directory.auth.fail user=%s reason=bind result=%d", username, code)
            raise InvalidCredentials()
        roles = dict(r for g in _groups_of(conn, cfg, dn) if (r := _classify(cfg, g, True)))
    role = next(((n, roles[n]) for n in ROLE_PRIORITY if n in roles), None)
    if role is None:
        log.info("event=directory.auth.norole user=%s", username)
        raise NoRole(f"{username} has no role in the control plane")
    log.info("event=directory.auth.ok user=%s role=%s", username, role[0])
    return Identity(dn=dn, uid=_first(attrs, "uid"), full_name=_first(attrs, "cn"),
                    mail=_first(attrs, "mail"), role=role[0], institution=role[1])


def list_people(cfg: DirectoryConfig, institution: str | None = None) -> list[Identity]:
    """List people with the role their place in the tree gives them (disabled ones included)."""
    base = cfg.base_dn
    if institution is not None:
        base = _role_location(cfg, "focal_point", _check_acronym(institution))[0]
    with _admin(cfg) as conn:
        if institution is not None and _get(conn, _institution_dn(cfg, institution)) is None:
            raise ValueError(f"unknown institution {institution!r}")
        entries = _search(conn, base, "(objectClass=inetOrgPerson)",
                          ["uid", "cn", "mail", "description"])
    people: list[Identity] = []
    for dn, attrs in entries:
        role = _classify(cfg, dn, group=False)
        if role is None:
            log.warning("event=directory.list.skip dn=%s reason=unexpected_location", dn)
            continue
        people.append(Identity(
            dn=dn, uid=_first(attrs, "uid"), full_name=_first(attrs, "cn"),
            mail=_first(attrs, "mail"), role=role[0], institution=role[1],
            disabled=DISABLED_MARK in _first(attrs, "description").lower()))
    return sorted(people, key=lambda p: p.uid.lower())
