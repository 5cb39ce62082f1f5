"""Sign-in by LDAP bind, roles from directory groups, the account mirrored at each login."""
from __future__ import annotations

import logging
import unicodedata
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select

from controlplane.accounts.forms import LoginForm
from controlplane.accounts.roles import load_user
from controlplane.audit import trail as audit
from controlplane.core.extensions import db, limiter, login_manager
from controlplane.core.infra import directory_config
from controlplane.core.models import Account, Institution, utcnow
from provisioners.directory import tree as directory

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)


def _mirror(identity: directory.Identity) -> Account | None:
    institution = None
    if identity.role == "focal_point":
        institution = db.session.scalar(select(Institution).where(
            Institution.acronym == identity.institution))
        if institution is None:
            return None
    account = db.session.scalar(select(Account).where(Account.username == identity.uid))
    before = None
    if account is None:
        account = Account(username=identity.uid, role=identity.role, dn=identity.dn)
        db.session.add(account)
    else:
        before = audit.snapshot(account, ("role", "dn", "institution_id"))
    account.dn = identity.dn
    account.full_name = identity.full_name
    account.email = identity.mail
    account.role = identity.role
    account.institution_id = institution.id if institution else None
    account.last_login_at = utcnow()
    after = audit.snapshot(account, ("role", "dn", "institution_id"))
    if before != after:
        audit.record("account.synced", account, actor=None, before=before, after=after)
    audit.record("account.login", account, actor=account)
    db.session.commit()
    return account


def _login_name() -> str:
    """The name as the directory matches it: " Alice ", "alice" and "ａｌｉｃｅ" count as one."""
    return unicodedata.normalize("NFKC", request.form.get("username") or "").strip().casefold()


def _login_key() -> str:
    """Attempts per (address, account)."""
    return f"{request.remote_addr}:{_login_name()[:64]}"


def _address_key() -> str:
    """Attempts per address, whatever account they try."""
    return request.remote_addr or "-"


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"], methods=["POST"],
               key_func=_login_key)
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN_ADDRESS"], methods=["POST"],
               key_func=_address_key)
def login():
    """Sign in with the directory account."""
    if current_user.is_authenticated:
        return redirect(url_for("views.home"))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        username = form.username.data.strip()
        try:
            identity = directory.authenticate(directory_config(), username, form.password.data)
        except directory.InvalidCredentials:
            error = _("Unknown user name or wrong password.")
        except directory.NoRole:
            error = _("Your account has no role on this portal; ask the data centre to add you "
                      "to your institution's focal points.")
        except directory.DirectoryUnavailable:
            log.error("event=login.directory_unavailable user=%s", username)
            error = _("The directory server cannot be reached; try again in a few minutes or "
                      "contact the data centre.")
        else:
            account = _mirror(identity)
            if account is None:
                error = _("Your institution is not registered on the portal yet; contact the "
                          "data centre.")
            else:
                login_user(account)
                session["lang"] = session.get("lang") or account.locale
                log.info("event=login.ok user=%s role=%s", account.username, account.role)
                return redirect(_safe_next() or url_for("views.home"))
        log.info("event=login.refused user=%s", username)
    elif request.method == "POST":
        error = _("Enter your user name and password.")
    return render_template("accounts/login.html", form=form, error=error), (401 if error else 200)


def _safe_next() -> str | None:
    """A path on this site, or None: browsers drop tabs and newlines and read a backslash as a
    slash, so "/%09/evil.com" would leave the site; any such character refuses the target."""
    target = request.args.get("next", "")
    if any(ord(c) < 0x21 or c in "\\\x7f" for c in target):
        return None
    parts = urlsplit(target)
    if not target.startswith("/") or target.startswith("//") or parts.scheme or parts.netloc:
        return None
    return target


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Sign out."""
    logout_user()
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/lang/<code>", methods=["POST"])
def set_language(code: str):
    """Switch the interface language."""
    if code not in current_app.config["LANGUAGES"]:
        abort(404)
    session["lang"] = code
    if current_user.is_authenticated:
        current_user.locale = code
        db.session.commit()
    return redirect(_safe_referrer())


def _safe_referrer() -> str:
    ref = request.referrer or ""
    host = request.host_url
    return ref if ref.startswith(host) else url_for("views.home")


@bp.errorhandler(429)
def too_many_attempts(exc):
    """The sign-in page again, saying why, rather than a bare error page."""
    return render_template("accounts/login.html", form=LoginForm(), error=_(
        "Too many sign-in attempts; wait a minute before trying again.")), 429


def init_app(app) -> None:
    login_manager.init_app(app)
    login_manager.user_loader(load_user)
    login_manager.login_view = "auth.login"
    login_manager.login_message = _l("Sign in to continue.")
    login_manager.login_message_category = "info"
    app.register_blueprint(bp)
