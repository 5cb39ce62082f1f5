"""Service accounts and managers groups against a real slapd."""
from __future__ import annotations

import secrets

import ldap3
import pytest

from provisioners.directory import service_accounts as sa
from provisioners.directory import tree as d

PASSWORD = "Secret-pw-1"


def _acr() -> str:
    return "S" + secrets.token_hex(3).upper()


def _person(cfg, role: str = "focal_point", institution: str | None = None) -> str:
    uid = f"{role[:2]}{secrets.token_hex(4)}"
    d.ensure_person(cfg, uid=uid, full_name="Aline Test Niyonzima", mail=f"{uid}@gov.bi",
                    password=PASSWORD, role=role, institution=institution)
    return uid


@pytest.fixture
def two_institutions(ldap_config) -> tuple[str, str]:
    a, b = _acr(), _acr()
    d.ensure_institution(ldap_config, a, "Ministère A")
    d.ensure_institution(ldap_config, b, "Office B")
    return a, b


def _bind(cfg, dn: str, password: str) -> bool:
    conn = ldap3.Connection(ldap3.Server(cfg.url, get_info=ldap3.NONE), user=dn,
                            password=password, raise_exceptions=False)
    try:
        return bool(conn.bind())
    finally:
        conn.unbind()


def _entry(cfg, dn: str) -> dict | None:
    conn = d.admin_connection(cfg)
    try:
        if not conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE,
                           attributes=[ldap3.ALL_ATTRIBUTES]):
            return None
        return {k.lower(): sorted(map(str, v if isinstance(v, list) else [v]))
                for k, v in conn.response[0]["attributes"].items()}
    finally:
        conn.unbind()


def _groups(cfg, uid: str) -> list[str]:
    conn = d.admin_connection(cfg)
    try:
        conn.search(cfg.base_dn, f"(&(objectClass=inetOrgPerson)(uid={uid}))")
        dn = conn.response[0]["dn"]
        conn.search(cfg.base_dn, f"(&(objectClass=groupOfNames)(member={dn}))")
        return sorted(r["dn"] for r in conn.response if r["type"] == "searchResEntry")
    finally:
        conn.unbind()


def test_service_account_is_convergent(ldap_config, two_institutions):
    cfg, (a, _b) = ldap_config, two_institutions
    dn = sa.ensure_service_account(cfg, a, 7, "first-pw-123", "DHIS2 du ministère")
    assert dn == f"uid=svc-7,ou=services,ou={a},ou=institutions,{cfg.base_dn}"
    first = _entry(cfg, dn)
    group = _entry(cfg, sa.managers_group_dn(cfg, a, 7))
    assert group is not None and group["cn"] == ["svc-7-managers"]
    assert sa.ensure_service_account(cfg, a, 7, "first-pw-123", "DHIS2 du ministère") == dn
    assert _entry(cfg, dn) == first  # same password: the hash is not even rewritten
    assert _bind(cfg, dn, "first-pw-123")
    assert not _bind(cfg, dn, "wrong")
    with pytest.raises(d.InvalidCredentials):  # a service account is no control-plane login
        d.authenticate(cfg, "svc-7", "first-pw-123")

    sa.ensure_service_account(cfg, a, 7, "second-pw-456", "DHIS2 (production)")
    assert not _bind(cfg, dn, "first-pw-123")
    assert _bind(cfg, dn, "second-pw-456")
    assert _entry(cfg, dn)["description"] == ["DHIS2 (production)"]

    sa.remove_service_account(cfg, a, 7)
    sa.remove_service_account(cfg, a, 7)
    assert _entry(cfg, dn) is None
    assert _entry(cfg, sa.managers_group_dn(cfg, a, 7)) is None


def test_service_account_input_is_checked(ldap_config, two_institutions):
    cfg, (a, _b) = ldap_config, two_institutions
    with pytest.raises(ValueError, match="unknown institution"):
        sa.ensure_service_account(cfg, "NOPE" + secrets.token_hex(2), 1, "pw", "x")
    with pytest.raises(ValueError, match="invalid service id"):
        sa.ensure_service_account(cfg, a, 0, "pw", "x")
    with pytest.raises(ValueError, match="invalid service id"):
        sa.ensure_service_account(cfg, a, "1,ou=x", "pw", "x")
    with pytest.raises(ValueError, match="acronym"):
        sa.ensure_service_account(cfg, "A,ou=x", 1, "pw", "x")
    with pytest.raises(ValueError, match="reserved"):
        sa.ensure_service_account(cfg, a, 1, "pw", "Disabled")
    with pytest.raises(ValueError, match="password"):
        sa.ensure_service_account(cfg, a, 1, "", "x")


def test_managers_come_from_the_same_institution(ldap_config, two_institutions):
    cfg, (a, b) = ldap_config, two_institutions
    ours, theirs = _person(cfg, institution=a), _person(cfg, institution=b)
    operator = _person(cfg, role="operator")
    sa.ensure_service_account(cfg, a, 8, "pw-8-xyz", "Gestion des stocks")
    with pytest.raises(ValueError, match="has no service account"):
        sa.add_manager(cfg, a, 9, ours)

    sa.add_manager(cfg, a, 8, ours)
    sa.add_manager(cfg, a, 8, ours)
    assert sa.list_managers(cfg, a, 8) == [ours]
    for outsider in (theirs, operator, "nobody" + secrets.token_hex(2)):
        with pytest.raises(ValueError, match=f"not a person of institution {a}"):
            sa.add_manager(cfg, a, 8, outsider)
    with pytest.raises(ValueError, match="uid must be"):
        sa.add_manager(cfg, a, 8, "x)(uid=*")
    assert sa.list_managers(cfg, a, 8) == [ours]
    # The managers group gives no role in the control plane: the focal point stays one.
    assert d.authenticate(cfg, ours, PASSWORD).role == "focal_point"

    sa.remove_manager(cfg, a, 8, ours)
    sa.remove_manager(cfg, a, 8, ours)
    sa.remove_manager(cfg, a, 8, theirs)
    assert sa.list_managers(cfg, a, 8) == []
    assert _entry(cfg, sa.managers_group_dn(cfg, a, 8))["member"] == [cfg.admin_dn]
    sa.remove_service_account(cfg, a, 8)
    sa.remove_manager(cfg, a, 8, ours)  # group gone: still fine


def test_disable_person_everywhere(ldap_config, two_institutions):
    cfg, (a, _b) = ldap_config, two_institutions
    leaving, staying = _person(cfg, institution=a), _person(cfg, institution=a)
    for service in (11, 12):
        sa.ensure_service_account(cfg, a, service, f"pw-{service}-abc", f"service {service}")
        sa.add_manager(cfg, a, service, leaving)
        sa.add_manager(cfg, a, service, staying)
    expected = sorted([sa.managers_group_dn(cfg, a, 11), sa.managers_group_dn(cfg, a, 12),
                       f"cn=focal-points,ou=groups,ou={a},ou=institutions,{cfg.base_dn}"])
    assert [g.lower() for g in _groups(cfg, leaving)] == [g.lower() for g in expected]

    left = sa.disable_person_everywhere(cfg, leaving)
    assert [g.lower() for g in left] == [g.lower() for g in expected]
    assert _groups(cfg, leaving) == []
    with pytest.raises(d.InvalidCredentials):
        d.authenticate(cfg, leaving, PASSWORD)
    assert sa.list_managers(cfg, a, 11) == [staying]
    assert sa.list_managers(cfg, a, 12) == [staying]
    with pytest.raises(ValueError, match="is disabled"):
        sa.add_manager(cfg, a, 11, leaving)
    assert sa.disable_person_everywhere(cfg, leaving) == []  # twice: nothing left to leave
    assert sa.disable_person_everywhere(cfg, "ghost" + secrets.token_hex(2)) == []
    for service in (11, 12):
        sa.remove_service_account(cfg, a, service)
