"""Who may see what: the role decorator on every route, and rows scoped to one institution."""
from __future__ import annotations

import functools

from flask import abort
from flask_login import current_user, login_required

from controlplane.core.extensions import db
from controlplane.core.models import Account


def load_user(user_id: str) -> Account | None:
    return db.session.get(Account, int(user_id)) if user_id.isdigit() else None


def role_required(*roles: str):
    """Route decorator: signed in, and one of `roles`.

    Focal points get 404 for what is not theirs (nothing about other routes or institutions
    leaks); operators and auditors get 403, which tells them their role is the reason.
    """

    def decorator(view):
        @functools.wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_user.role not in roles:
                abort(404 if current_user.is_focal_point else 403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def scoped_get(model, obj_id: int):
    """Fetch a row the current user may see; another institution's rows do not exist for them."""
    obj = db.session.get(model, obj_id)
    if obj is None:
        abort(404)
    if current_user.is_focal_point and obj.institution_id != current_user.institution_id:
        abort(404)
    return obj
