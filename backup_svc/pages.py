"""Pages for people: the admin dashboard."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template_string

from .auth import auth

bp = Blueprint("pages", __name__)

_PLACEHOLDER = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>backup_svc</title></head>
<body><h1>backup_svc</h1><p>Database backups for <strong>{{ name }}</strong>.</p>
<p><a href="/api/v1/backup" download>Download backup</a></p></body></html>"""


@bp.get("/")
@auth.login_required
def dashboard():
    """The admin dashboard."""
    return render_template_string(_PLACEHOLDER, name=current_app.extensions["backup_svc"].settings.backup_name)
