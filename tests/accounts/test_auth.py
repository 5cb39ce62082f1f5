"""Sign-in against the real slapd: roles from groups, clear refusals, rate limit, CSRF."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from controlplane.core.models import Account, AuditEvent
from tests.conftest import PASSWORD, AuthActions, csrf_token


def test_login_page_in_french_by_default(client):
    page = client.get("/login").get_data(as_text=True)
    assert "Connexion" in page and 'lang="fr"' in page


def test_each_role_lands_on_its_page(app, client):
    auth = AuthActions(client)
    for uid, target in [("fp.sante", "/portal/"), ("op.one", "/ops/"), ("au.one", "/audit/")]:
        response = auth.login(uid)
        assert response.status_code == 302, response.get_data(as_text=True)
        assert client.get("/").headers["Location"].endswith(target)
        auth.logout()


def test_account_is_mirrored_at_login(app, auth):
    auth.login("fp.sante")
    with app.app_context():
        from controlplane.core.extensions import db

        account = db.session.scalar(select(Account).where(Account.username == "fp.sante"))
        assert account.role == "focal_point"
        assert account.institution.acronym == "MINISANTE"
        assert account.dn.startswith("uid=fp.sante,")
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "account.login"))


def test_wrong_password(client, auth):
    response = auth.login("fp.sante", "wrong")
    assert response.status_code == 401
    assert "Nom d’utilisateur inconnu ou mot de passe incorrect" in response.get_data(as_text=True)


def test_unknown_user_same_message(client, auth):
    response = auth.login("nobody.here", PASSWORD)
    assert response.status_code == 401
    assert "Nom d’utilisateur inconnu ou mot de passe incorrect" in response.get_data(as_text=True)


def test_filter_injection_is_just_a_wrong_login(client, auth):
    for name in ["*", "fp.sante)(uid=*", "*)(|(uid=*"]:
        assert auth.login(name, PASSWORD).status_code == 401


def test_directory_unreachable(app, client):
    from devtools import devstack

    app.config["LDAP_URL"] = f"ldap://127.0.0.1:{devstack.free_port()}"
    app.config["LDAP_TIMEOUT"] = 2
    response = AuthActions(client).login("fp.sante")
    assert response.status_code == 401
    assert "serveur d’annuaire est injoignable" in response.get_data(as_text=True)


def test_login_rate_limited(app_config, tmp_path, monkeypatch):
    from controlplane.app import create_app

    monkeypatch.setenv("CONTROLPLANE_INSTANCE", str(tmp_path / "rl"))
    app = create_app(dict(app_config, RATELIMIT_LOGIN="3 per minute"))
    client = app.test_client()
    auth = AuthActions(client)
    codes = [auth.login("fp.obr", "bad").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    page = auth.login("fp.obr").get_data(as_text=True)
    assert "Trop de tentatives" in page


def test_one_account_is_one_throttle_whatever_its_spelling(app_config, tmp_path, monkeypatch):
    """" fp.obr ", "FP.OBR" and "fp.obr" count against the same attempts."""
    from controlplane.app import create_app

    monkeypatch.setenv("CONTROLPLANE_INSTANCE", str(tmp_path / "rl"))
    app = create_app(dict(app_config, RATELIMIT_LOGIN="3 per minute"))
    auth = AuthActions(app.test_client())
    codes = [auth.login(name, "bad").status_code
             for name in ("fp.obr", " fp.obr ", "FP.OBR", "\tfp.obr")]
    assert codes == [401, 401, 401, 429]


def test_one_address_is_throttled_across_accounts(app_config, tmp_path, monkeypatch):
    from controlplane.app import create_app

    monkeypatch.setenv("CONTROLPLANE_INSTANCE", str(tmp_path / "rl"))
    app = create_app(dict(app_config, RATELIMIT_LOGIN_ADDRESS="3 per minute"))
    auth = AuthActions(app.test_client())
    codes = [auth.login(name, "bad").status_code for name in ("a.one", "b.two", "c.three",
                                                               "d.four")]
    assert codes == [401, 401, 401, 429]


@pytest.mark.parametrize("target", ["/%09/evil.com", "//evil.com", "/\\evil.com",
                                    "https://evil.com/", "/%0a/evil.com", "%2F%2Fevil.com",
                                    "/ /evil.com"])
def test_sign_in_never_redirects_off_the_site(client, target):
    token = csrf_token(client, "/login")
    response = client.post(f"/login?next={target}", data={
        "username": "fp.sante", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert "evil" not in location and location.startswith("/")


def test_sign_in_follows_a_path_on_the_site(client):
    token = csrf_token(client, "/login")
    response = client.post("/login?next=/portal/mail/", data={
        "username": "fp.sante", "password": PASSWORD, "csrf_token": token})
    assert response.headers["Location"] == "/portal/mail/"


def test_post_without_csrf_token_is_refused(client):
    response = client.post("/login", data={"username": "fp.sante", "password": PASSWORD})
    assert response.status_code in (400, 401)
    assert b"Traceback" not in response.data


def test_logout_requires_csrf(client, auth):
    auth.login("fp.sante")
    response = client.post("/logout")
    assert response.status_code == 400
    assert "formulaire a expiré" in response.get_data(as_text=True)


def test_switch_to_english(client, auth):
    auth.login("fp.sante")
    auth.post("/lang/en", page="/portal/")
    page = client.get("/portal/").get_data(as_text=True)
    assert 'lang="en"' in page and "Request a website" in page


def test_pages_need_login(client):
    response = client.get("/portal/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
