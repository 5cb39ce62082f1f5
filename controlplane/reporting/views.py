"""Auditors' monthly statements: choose a month, follow the task, download CSV and PDF."""
from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select

from controlplane.accounts.roles import role_required
from controlplane.core.extensions import db
from controlplane.core.forms import ActionForm
from controlplane.core.models import Institution, Task
from controlplane.reporting import jobs as reports
from controlplane.worker.views import own_task

bp = Blueprint("reports", __name__)


def _previous_month() -> str:
    today = date.today()
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{year:04d}-{month:02d}"


@bp.route("/audit/statements", methods=["GET", "POST"])
@role_required("auditor", "operator")
def statements_page():
    """Choose a month (and an institution) and generate the usage statements."""
    institutions = db.session.scalars(select(Institution).order_by(Institution.acronym)).all()
    form = ActionForm()
    month = request.values.get("month") or _previous_month()
    if request.method == "POST" and form.validate_on_submit():
        inst = request.form.get("institution", "")
        try:
            task = reports.start_statements(current_user, month,
                                            int(inst) if inst.isdigit() else None)
        except ValueError:
            flash(_("Invalid month: use the form YYYY-MM, e.g. 2026-10."), "error")
        else:
            return redirect(url_for("tasks.task_page", task_id=task.id))
    recent = db.session.scalars(select(Task).where(Task.owner_id == current_user.id)
                                .order_by(Task.created_at.desc()).limit(10)).all()
    return render_template("reporting/statements.html", institutions=institutions, month=month,
                           form=form, recent=recent)


@bp.route("/tasks/<task_id>/download/<fmt>")
@login_required
def task_download(task_id: str, fmt: str):
    """The report file of a finished task."""
    task = own_task(task_id)
    if fmt not in ("csv", "pdf") or task.status != "done" or not task.result_path:
        abort(404)
    month = task.params.get("month", "")
    return send_file(f"{task.result_path}/statements.{fmt}", as_attachment=True,
                     download_name=f"releves-{month}.{fmt}")
