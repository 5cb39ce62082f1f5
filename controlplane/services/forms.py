"""Forms of the service page."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired


class UploadForm(FlaskForm):
    archive = FileField(_l("Site archive (.tar.gz, .tgz, .tar or .zip)"),
                        validators=[FileRequired()])
