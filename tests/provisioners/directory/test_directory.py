"""Directory behaviour against a real slapd: convergence, roles, and hostile login input."""
from __future__ import annotations

import dataclasses
import secrets
import socket
import time

import ldap3
import pytest

from devtools import devstack
from provisioners.directory import tree as d


def _uid(prefix: str = "u") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def _acr() -> str:
    return "T" + secrets.token_hex(3).upper()


@pytest.fixture
def institution(ldap_config) -> str:
    acronym = _acr()
    d.ensure_institution(ldap_config, acronym, "Ministère de test")
    return acronym


def _person(cfg, role: str, institution: str | None = None, password: str = "Secret-pw-1") -> str:
    uid = _uid(role[:2])
    d.ensure_person(cfg, uid=uid, full_name="Jean Test Ndikumana", mail=f"{uid}@gov.bi",
                    password=password, role=role, institution=institution)
    return uid


def _snapshot(cfg) -> dict[str, dict[str, list[str]]]:
    conn = d.admin_connection(cfg)
    try:
        conn.search(cfg.base_dn, "(objectClass=*)", attributes=[ldap3.ALL_ATTRIBUTES])
        return {r["dn"].lower(): {k.lower(): sorted(map(str, v if isinstance(v, list) else [v]))
                                  for k, v in r["attributes"].items()}
                for r in conn.response if r["type"] == "searchResEntry"}
    finally:
        conn.unbind()


def _groups(cfg, uid: str) -> list[str]:
    conn = d.admin_connection(cfg)
    try:
        conn.search(cfg.base_dn, f"(uid={uid})")
        dn = conn.response[0]["dn"]
        conn.search(cfg.base_dn, f"(&(objectClass=groupOfNames)(member={dn}))")
        return [r["dn"] for r in conn.response if r["type"] == "searchResEntry"]
    finally:
        conn.unbind()


def test_tree_and_person_are_idempotent(ldap_config, institution):
    cfg = ldap_config
    kwargs = dict(uid=_uid(), full_name="Aline Irakoze", mail="aline@gov.bi",
                  password="pw-idem", role="focal_point", institution=institution)
    d.ensure_tree(cfg)
    d.ensure_institution(cfg, institution, "Ministère de test")
    dn = d.ensure_person(cfg, **kwargs)
    first = _snapshot(cfg)
    d.ensure_tree(cfg)
    d.ensure_institution(cfg, institution, "Ministère de test")
    assert d.ensure_person(cfg, **kwargs) == dn
    second = _snapshot(cfg)
    assert len(first) == len(second)
    assert first == second  # same password: the hash is not even rewritten


def test_drift_is_reasserted(ldap_config, institution):
    cfg = ldap_config
    uid = _person(cfg, "focal_point", institution)
    conn = d.admin_connection(cfg)
    try:
        conn.search(cfg.base_dn, f"(uid={uid})")
        dn = conn.response[0]["dn"]
        conn.modify(dn, {"cn": [(ldap3.MODIFY_REPLACE, ["Drifted"])]})
        conn.modify(d._focal_group_dn(cfg, institution),
                    {"member": [(ldap3.MODIFY_DELETE, [dn])]})
        conn.modify(f"ou={institution},ou=institutions,{cfg.base_dn}",
                    {"description": [(ldap3.MODIFY_REPLACE, ["old name"])]})
    finally:
        conn.unbind()
    with pytest.raises(d.NoRole):
        d.authenticate(cfg, uid, "Secret-pw-1")
    d.ensure_institution(cfg, institution, "Ministère de test")
    _person_again = d.ensure_person(cfg, uid=uid, full_name="Jean Test Ndikumana",
                                    mail=f"{uid}@gov.bi", password="Secret-pw-1",
                                    role="focal_point", institution=institution)
    ident = d.authenticate(cfg, uid, "Secret-pw-1")
    assert ident.full_name == "Jean Test Ndikumana"
    snap = _snapshot(cfg)
    assert snap[f"ou={institution.lower()},ou=institutions,dc=gov,dc=bi"]["description"] == \
        ["Ministère de test"]


@pytest.mark.parametrize("role", ["focal_point", "operator", "auditor"])
def test_authenticate_each_role(ldap_config, institution, role):
    inst = institution if role == "focal_point" else None
    uid = _person(ldap_config, role, inst)
    ident = d.authenticate(ldap_config, uid, "Secret-pw-1")
    assert ident.uid == uid and ident.role == role
    assert ident.institution == inst
    assert ident.mail == f"{uid}@gov.bi" and ident.full_name == "Jean Test Ndikumana"
    container = {"focal_point": f"ou=people,ou={institution},ou=institutions",
                 "operator": "ou=staff", "auditor": "ou=auditors"}[role]
    assert ident.dn == f"uid={uid},{container},dc=gov,dc=bi"


def test_wrong_password_and_unknown_user_look_the_same(ldap_config):
    uid = _person(ldap_config, "operator")
    with pytest.raises(d.InvalidCredentials) as wrong:
        d.authenticate(ldap_config, uid, "not-the-password")
    with pytest.raises(d.InvalidCredentials) as unknown:
        d.authenticate(ldap_config, "nobody" + secrets.token_hex(3), "Secret-pw-1")
    assert str(wrong.value) == str(unknown.value)


@pytest.mark.parametrize("password", ["", None])
def test_empty_password_is_rejected(ldap_config, password):
    uid = _person(ldap_config, "operator")
    with pytest.raises(d.InvalidCredentials):
        d.authenticate(ldap_config, uid, password)


@pytest.mark.parametrize("username", [
    "*", "admin)(uid=*", "*)(objectClass=*", "a*", "cn=admin,dc=gov,dc=bi", "", "a" * 65,
    "alice\x00", "alice ", "(uid=*)", "\\2a",
])
def test_injection_attempts_are_invalid(ldap_config, username):
    _person(ldap_config, "operator")
    with pytest.raises(d.InvalidCredentials):
        d.authenticate(ldap_config, username, "Secret-pw-1")


def test_wildcard_prefix_does_not_match_real_user(ldap_config):
    uid = _person(ldap_config, "operator")
    with pytest.raises(d.InvalidCredentials):
        d.authenticate(ldap_config, uid[:-1] + "*", "Secret-pw-1")


def test_admin_cannot_log_in_as_a_user(ldap_config):
    with pytest.raises(d.InvalidCredentials):
        d.authenticate(ldap_config, "admin", ldap_config.admin_password)


def test_closed_port_is_unavailable(ldap_config):
    cfg = dataclasses.replace(ldap_config, url=f"ldap://127.0.0.1:{devstack.free_port()}",
                              timeout=2)
    with pytest.raises(d.DirectoryUnavailable):
        d.authenticate(cfg, "someone", "pw")
    with pytest.raises(d.DirectoryUnavailable):
        d.ensure_tree(cfg)


def test_silent_server_times_out(ldap_config):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)  # accepts at kernel level, never answers
        cfg = dataclasses.replace(ldap_config, url=f"ldap://127.0.0.1:{listener.getsockname()[1]}",
                                  timeout=1)
        start = time.monotonic()
        with pytest.raises(d.DirectoryUnavailable):
            d.authenticate(cfg, "someone", "pw")
        assert time.monotonic() - start < 10


def test_wrong_admin_password_is_unavailable(ldap_config):
    cfg = dataclasses.replace(ldap_config, admin_password="wrong")
    with pytest.raises(d.DirectoryUnavailable):
        d.ensure_tree(cfg)
    with pytest.raises(d.DirectoryUnavailable):
        d.ensure_tree(dataclasses.replace(ldap_config, admin_password=""))


def test_disable_person(ldap_config, institution):
    uid = _person(ldap_config, "focal_point", institution)
    assert _groups(ldap_config, uid)
    d.disable_person(ldap_config, uid)
    d.disable_person(ldap_config, uid)
    with pytest.raises(d.InvalidCredentials):
        d.authenticate(ldap_config, uid, "Secret-pw-1")
    assert _groups(ldap_config, uid) == []
    listed = {p.uid: p for p in d.list_people(ldap_config, institution)}
    assert listed[uid].disabled
    d.set_password(ldap_config, uid, "Secret-pw-2")  # still disabled: the ACL refuses the bind
    with pytest.raises(d.InvalidCredentials):
        d.authenticate(ldap_config, uid, "Secret-pw-2")
    dn = f"uid={uid},ou=people,ou={institution},ou=institutions,{ldap_config.base_dn}"
    raw = ldap3.Connection(ldap3.Server(ldap_config.url, get_info=ldap3.NONE), user=dn,
                           password="Secret-pw-2")
    assert not raw.bind() and raw.result["result"] == 49  # slapd itself refuses, not only us
    raw.unbind()
    d.disable_person(ldap_config, "neverexisted")
    d.ensure_person(ldap_config, uid=uid, full_name="Jean Test Ndikumana", mail=f"{uid}@gov.bi",
                    password="Secret-pw-3", role="focal_point", institution=institution)
    assert d.authenticate(ldap_config, uid, "Secret-pw-3").role == "focal_point"


def test_remove_is_idempotent(ldap_config, institution):
    uid = _person(ldap_config, "focal_point", institution)
    d.remove_person(ldap_config, uid)
    d.remove_person(ldap_config, uid)
    d.remove_person(ldap_config, "neverexisted")
    d.remove_from_all_groups(ldap_config, "neverexisted")
    with pytest.raises(d.InvalidCredentials):
        d.authenticate(ldap_config, uid, "Secret-pw-1")
    assert uid not in {p.uid for p in d.list_people(ldap_config)}
    snap = _snapshot(ldap_config)
    group = snap[d._focal_group_dn(ldap_config, institution).lower()]
    assert group["member"] == [ldap_config.admin_dn]  # the placeholder keeps the group valid


def test_no_role(ldap_config):
    uid = _person(ldap_config, "auditor")
    d.remove_from_all_groups(ldap_config, uid)
    with pytest.raises(d.NoRole):
        d.authenticate(ldap_config, uid, "Secret-pw-1")


def test_set_password(ldap_config):
    uid = _person(ldap_config, "operator")
    d.set_password(ldap_config, uid, "New-pw-2")
    with pytest.raises(d.InvalidCredentials):
        d.authenticate(ldap_config, uid, "Secret-pw-1")
    assert d.authenticate(ldap_config, uid, "New-pw-2").role == "operator"
    with pytest.raises(d.DirectoryError):
        d.set_password(ldap_config, "neverexisted", "x")
    with pytest.raises(ValueError):
        d.set_password(ldap_config, uid, "")


def test_passwords_are_stored_hashed(ldap_config):
    uid = _person(ldap_config, "operator", password="Plain-text-pw")
    entry = next(v for k, v in _snapshot(ldap_config).items() if k.startswith(f"uid={uid},"))
    (stored,) = entry["userpassword"]
    assert "Plain-text-pw" not in stored and "SSHA" in stored


def test_role_priority(ldap_config, institution):
    uid = _person(ldap_config, "focal_point", institution)
    dn = d.authenticate(ldap_config, uid, "Secret-pw-1").dn
    conn = d.admin_connection(ldap_config)
    try:
        for group in ("auditors", "operators"):
            conn.modify(f"cn={group},ou=groups,{ldap_config.base_dn}",
                        {"member": [(ldap3.MODIFY_ADD, [dn])]})
            expected = group[:-1]
            assert d.authenticate(ldap_config, uid, "Secret-pw-1").role == expected
    finally:
        conn.unbind()
    d.remove_person(ldap_config, uid)
    assert not _snapshot_has_member(ldap_config, dn)


def _snapshot_has_member(cfg, dn: str) -> bool:
    return any(dn.lower() in [m.lower() for m in attrs.get("member", [])]
               for attrs in _snapshot(cfg).values())


def test_role_change_moves_the_entry(ldap_config, institution):
    uid = _person(ldap_config, "focal_point", institution)
    d.ensure_person(ldap_config, uid=uid, full_name="Jean Test Ndikumana", mail=f"{uid}@gov.bi",
                    password="Secret-pw-1", role="operator")
    ident = d.authenticate(ldap_config, uid, "Secret-pw-1")
    assert ident.role == "operator" and ident.dn.startswith(f"uid={uid},ou=staff,")
    assert [g.split(",")[0] for g in _groups(ldap_config, uid)] == ["cn=operators"]


def test_list_people(ldap_config, institution):
    focal = _person(ldap_config, "focal_point", institution)
    op = _person(ldap_config, "operator")
    mine = d.list_people(ldap_config, institution)
    assert [(p.uid, p.role, p.institution) for p in mine] == [(focal, "focal_point", institution)]
    everyone = {p.uid: p.role for p in d.list_people(ldap_config)}
    assert everyone[focal] == "focal_point" and everyone[op] == "operator"
    with pytest.raises(ValueError):
        d.list_people(ldap_config, "NOPE" + secrets.token_hex(2).upper())


@pytest.mark.parametrize("kwargs, message", [
    (dict(role="admin"), "unknown role"),
    (dict(role="focal_point", institution="NOSUCHINST"), "unknown institution"),
    (dict(role="focal_point"), "needs an institution"),
    (dict(role="operator", institution="MINISANTE"), "does not belong"),
    (dict(role="operator", uid="bad uid"), "uid"),
    (dict(role="operator", mail="not-an-address"), "mail"),
    (dict(role="operator", password=""), "password"),
])
def test_ensure_person_rejects_bad_input(ldap_config, kwargs, message):
    base = dict(uid=_uid(), full_name="X Y", mail="x@gov.bi", password="pw")
    with pytest.raises(ValueError, match=message):
        d.ensure_person(ldap_config, **{**base, **kwargs})


def test_ensure_institution_rejects_bad_acronym(ldap_config):
    with pytest.raises(ValueError):
        d.ensure_institution(ldap_config, "BAD,ou=x", "Injected")
    with pytest.raises(ValueError):
        d.ensure_institution(ldap_config, "OK", "")
