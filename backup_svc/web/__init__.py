"""The Flask app: `create_app` registers one blueprint per view module (`health`, `api`, `cancel`,
`stored_api`, `pages`); gunicorn around it is `backup_svc/serving/`."""

from __future__ import annotations

from flask import Flask

from backup_svc.config import Settings, load_dotenv_file
from backup_svc.web.state import EXTENSION, BackupService


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app; without `settings`, read and validate them from the environment and `.env`."""
    if settings is None:
        load_dotenv_file()
        settings = Settings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024  # nothing here takes a request body
    state = app.extensions[EXTENSION] = BackupService(settings)
    if settings.storage is not None:
        from backup_svc.runs.scheduler import StoredBackups

        state.stored = StoredBackups(state)  # its schedule is started by the server, in the worker

    from backup_svc.web.restore_jobs import RestoreJobs

    state.restores = RestoreJobs(state)

    from backup_svc.web import api, cancel, download, health, history_view, holds_api, pages, restores, stored_api
    from backup_svc.web.errors import register_error_handlers
    from backup_svc.web.proxy import trust_proxy_headers
    from backup_svc.web.security import install_security_headers

    trust_proxy_headers(app, settings.trusted_proxy_hops)
    app.wsgi_app = download.CloseUnsentBodies(app.wsgi_app)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(cancel.bp)
    app.register_blueprint(stored_api.bp)
    app.register_blueprint(history_view.bp)
    app.register_blueprint(holds_api.bp)
    app.register_blueprint(restores.bp)
    app.register_blueprint(pages.bp)
    install_security_headers(app)
    register_error_handlers(app)
    return app


def app_and_service(settings: Settings) -> tuple[Flask, BackupService]:
    """The app and its service state, as serving/server.py's worker loads them (cli.py hands this over)."""
    app = create_app(settings)
    return app, app.extensions[EXTENSION]
