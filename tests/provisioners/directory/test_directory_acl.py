"""A service's directory account reads its own institution's subtree only (real slapd)."""
from __future__ import annotations

import secrets

import ldap3
import pytest

from provisioners.directory import service_accounts


@pytest.fixture(scope="module")
def svc_account(ldap_config, directory_people):
    password = secrets.token_urlsafe(16)
    dn = service_accounts.ensure_service_account(ldap_config, "MINISANTE", 4242, password,
                                                 "acl test")
    yield dn, password
    service_accounts.remove_service_account(ldap_config, "MINISANTE", 4242)


def search(cfg, dn, password, base):
    server = ldap3.Server(cfg.url, connect_timeout=5)
    with ldap3.Connection(server, user=dn, password=password, auto_bind=True) as conn:
        conn.search(base, "(objectClass=*)", attributes=["uid"])
        return [str(e.entry_dn) for e in conn.entries]


def test_service_account_sees_its_institution(ldap_config, svc_account):
    dn, password = svc_account
    own = search(ldap_config, dn, password, f"ou=MINISANTE,ou=institutions,{ldap_config.base_dn}")
    assert any(e.startswith("uid=fp.sante,") for e in own)


def test_service_account_cannot_read_other_institutions_or_staff(ldap_config, svc_account):
    dn, password = svc_account
    assert search(ldap_config, dn, password,
                  f"ou=OBR,ou=institutions,{ldap_config.base_dn}") == []
    assert search(ldap_config, dn, password, f"ou=staff,{ldap_config.base_dn}") == []


def test_people_still_sign_in(ldap_config, directory_people):
    from provisioners.directory import tree as directory
    from tests.conftest import PASSWORD

    assert directory.authenticate(ldap_config, "fp.obr", PASSWORD).institution == "OBR"
    assert directory.authenticate(ldap_config, "op.one", PASSWORD).role == "operator"
