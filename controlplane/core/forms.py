"""The form every button posts: CSRF only. Forms with fields live in their domain's forms.py."""
from __future__ import annotations

from flask_wtf import FlaskForm


class ActionForm(FlaskForm):
    """A bare form for buttons: CSRF only."""
