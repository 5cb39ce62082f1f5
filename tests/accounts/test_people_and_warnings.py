"""Offboarding a person in one action, and quota warnings shown to the people concerned."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from controlplane.core.extensions import db
from controlplane.core.models import Alert, Institution, Service, UsageSample, utcnow
from controlplane.quotas.warnings import check_warnings
from tests.conftest import PASSWORD, AuthActions


def test_disable_person_removes_every_membership(app, ldap_config, client):
    from provisioners.directory import service_accounts
    from provisioners.directory import tree as directory

    directory.ensure_person(ldap_config, uid="fp.leaving", full_name="Leaving", mail="l@x.bi",
                            password=PASSWORD, role="focal_point", institution="MINISANTE")
    service_accounts.ensure_service_account(ldap_config, "MINISANTE", 7001, "Svc-pass-123456",
                                            "test")
    service_accounts.add_manager(ldap_config, "MINISANTE", 7001, "fp.leaving")
    result = app.test_cli_runner().invoke(args=["person", "disable", "fp.leaving"])
    assert result.exit_code == 0, result.output
    assert service_accounts.list_managers(ldap_config, "MINISANTE", 7001) == []
    response = AuthActions(client).login("fp.leaving")
    assert response.status_code == 401
    service_accounts.remove_service_account(ldap_config, "MINISANTE", 7001)


def test_disk_warning_reaches_focal_points_and_operators(app, client, auth):
    with app.app_context():
        inst = db.session.scalar(select(Institution).where(Institution.acronym == "MINISANTE"))
        svc = Service(institution_id=inst.id, kind="website", hostname="plein.minisante.gov.bi",
                      size="S", status="running")
        db.session.add(svc)
        db.session.flush()
        size = app.extensions["policies"].size("website", "S")
        db.session.add(UsageSample(at=utcnow() - timedelta(seconds=5), service_id=svc.id,
                                   institution_id=inst.id, disk_used=int(size.disk_bytes * 0.95)))
        db.session.commit()
        assert check_warnings() >= 1
        alert = db.session.scalar(select(Alert).where(Alert.kind == "quota_warning"))
        assert alert.service_id == svc.id and "94,9 %" in alert.message
        svc_id, inst_id = svc.id, inst.id
    auth.login("fp.sante")
    assert "plein.minisante.gov.bi" in client.get("/portal/usage").get_data(as_text=True)
    auth.logout()
    auth.login("op.one")
    assert "plein.minisante.gov.bi" in client.get("/ops/dashboard").get_data(as_text=True)
    with app.app_context():
        db.session.add(UsageSample(at=utcnow(), service_id=svc_id, institution_id=inst_id,
                                   disk_used=1024))
        db.session.commit()
        check_warnings()
        assert db.session.scalar(select(Alert).where(Alert.kind == "quota_warning",
                                                     Alert.cleared_at.is_(None))) is None
