"""The progress page of a long task (statements, image loads), for the person who started it."""
from __future__ import annotations

from flask import Blueprint, abort, jsonify, render_template
from flask_login import current_user, login_required

from controlplane.core.extensions import db
from controlplane.core.models import Task

bp = Blueprint("tasks", __name__)


def own_task(task_id: str) -> Task:
    """The task if the current user started it; 404 for anyone else."""
    task = db.session.get(Task, task_id)
    if task is None or task.owner_id != current_user.id:
        abort(404)
    return task


@bp.route("/tasks/<task_id>")
@login_required
def task_page(task_id: str):
    """A long task: progress while it runs, downloads when it is done."""
    return render_template("worker/task.html", task=own_task(task_id))


@bp.route("/tasks/<task_id>.json")
@login_required
def task_status(task_id: str):
    """Progress for the page's poller."""
    task = own_task(task_id)
    return jsonify({"status": task.status, "progress": task.progress, "message": task.message})
