"""Forms of applications: the request, and the upload of an image archive."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional


class ApplicationRequestForm(FlaskForm):
    name = StringField(_l("Application name"), validators=[DataRequired(), Length(max=40)],
                       description=_l("Lowercase letters, digits and hyphens, e.g. "
                                      "dossier-patient."))
    hostname = StringField(_l("Host name"), validators=[DataRequired(), Length(max=253)])
    image = StringField(_l("Image"), validators=[DataRequired(), Length(max=255)])
    follow_tag = BooleanField(_l("Deploy each push of this tag"),
                              description=_l("When this tag is pushed to the data centre’s "
                                             "registry again, the new image replaces the "
                                             "running one once its health check passes."))
    port = IntegerField(_l("HTTP port inside the container"), default=8080,
                        validators=[DataRequired(), NumberRange(1, 65535)])
    health_path = StringField(_l("Health check path"), default="/",
                              validators=[Optional(), Length(max=200)])
    environment = TextAreaField(_l("Environment variables"), validators=[Length(max=20000)],
                                description=_l("One NAME=value per line. Values are stored "
                                               "encrypted."))
    volume_path = StringField(_l("Persistent volume mount point (optional)"),
                              validators=[Optional(), Length(max=200)])
    database = SelectField(_l("Database to bind (optional)"), validate_choice=False)
    size = SelectField(_l("Size"), validators=[DataRequired()], validate_choice=False)


class ImageUploadForm(FlaskForm):
    archive = FileField(_l("Image archive (output of docker save, .tar)"),
                        validators=[FileRequired()])
