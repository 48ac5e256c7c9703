"""The demo: a throwaway local PostgreSQL with sample data, a throwaway S3 server for stored backups,
and a banner that says how to use them."""

from __future__ import annotations

import secrets
import shlex
import sys
from pathlib import Path

from backup_svc.pg.binaries import pg_bin_dirs
from backup_svc.pg.localcluster import LocalCluster, find_server_bin_dir

DEMO_DATABASE = "shop"
# Where the banner's commands restore to: a new database on the demo's own cluster.
RESTORE_DATABASE = "shop_restored"
# ... and where the stored-backup commands restore to.
RESTORE_FROM_BUCKET = "shop_from_bucket"
DEMO_SQL = Path(__file__).with_name("demo_data.sql")


def start_demo(env: dict[str, str]) -> tuple[LocalCluster, dict[str, str]]:
    """Start the cluster, load the sample database, fill in missing credentials and print the banner."""
    if env.get("DATABASE_URL"):
        print("backup_svc: --demo ignores DATABASE_URL and uses a throwaway local PostgreSQL", file=sys.stderr)
    bin_dirs = pg_bin_dirs(env)
    print("Starting a throwaway PostgreSQL with sample data ...", flush=True)
    cluster = LocalCluster(find_server_bin_dir(bin_dirs)).start()
    # The cluster runs in a session of its own: whatever stops the start from here on (a failed load,
    # the S3 server, a Ctrl-C) must stop it too, or it outlives the demo.
    try:
        env["DATABASE_URL"] = cluster.create_database(DEMO_DATABASE, DEMO_SQL.read_text())
        env.setdefault("ADMIN_USERNAME", "admin")
        generated = [name for name in ("ADMIN_PASSWORD", "ADMIN_TOKEN") if not env.get(name)]
        for name in generated:
            env[name] = secrets.token_urlsafe(18)
        storage = start_storage(env)
        print(banner(env, cluster, generated=bool(generated)) + storage, flush=True)
    except BaseException:
        cluster.stop()
        raise
    return cluster, env


def start_storage(env: dict[str, str]) -> str:
    """Stored backups for the demo on a throwaway S3 server on loopback; the banner's lines about them.

    The server lives in this (gunicorn's master) process, in memory: it is gone when the demo stops.
    """
    from backup_svc.storage.settings import CLIENT_VARIABLES
    from backup_svc.storage.loopback import moto_available, start_demo_storage

    if any(env.get(name) for name in ("BACKUP_STORAGE_URL", *CLIENT_VARIABLES)):
        print("backup_svc: --demo ignores BACKUP_STORAGE_URL and AWS_* and uses a throwaway S3 server", file=sys.stderr)
    for name in ("BACKUP_STORAGE_URL", *CLIENT_VARIABLES):
        env.pop(name, None)
    if not moto_available():
        for name in ("BACKUP_SCHEDULE", "BACKUP_RETENTION"):
            env.pop(name, None)
        return (
            "  Stored backups: off in this demo (its throwaway S3 server needs moto: "
            ".venv/bin/pip install -r requirements-demo.txt, or ./dev.sh run, which does)\n"
        )
    server = start_demo_storage(env, DEMO_DATABASE)
    return storage_banner(env, server.endpoint)


def storage_banner(env: dict[str, str], endpoint: str) -> str:
    """Where stored backups go, and `upload`, `list` and `restore s3://…` to paste into a shell."""
    cli = cli_command()
    url = env["BACKUP_STORAGE_URL"]
    restored = env["DATABASE_URL"].rsplit("/", 1)[0] + f"/{RESTORE_FROM_BUCKET}"
    lines = [
        f"  Stored backups: {url} on a throwaway S3 server at {endpoint} (in memory, gone at Ctrl-C),",
        f"    on BACKUP_SCHEDULE='{env['BACKUP_SCHEDULE']}' (UTC), BACKUP_RETENTION={env['BACKUP_RETENTION']};"
        " the dashboard lists them.",
        "  Stored backups from a shell: take one, list them, read the history, restore the newest into a new database:",
        f"    export BACKUP_STORAGE_URL={url} AWS_ENDPOINT_URL={endpoint} AWS_S3_URL_STYLE=path",
        f"    export AWS_ACCESS_KEY_ID={env['AWS_ACCESS_KEY_ID']} AWS_SECRET_ACCESS_KEY={env['AWS_SECRET_ACCESS_KEY']}"
        f" AWS_DEFAULT_REGION={env['AWS_DEFAULT_REGION']}",
        f"    export DATABASE_URL='{env['DATABASE_URL']}'",
        f"    {cli} upload",
        f"    {cli} list",
        f"    {cli} history --limit 5",
        f"    NAME=$({cli} list | awk 'NR == 1 {{print $1}}')",
        f"    {cli} restore \"$BACKUP_STORAGE_URL$NAME\" --target-url '{restored}' --create",
    ]
    return "\n".join(["", *lines, "", ""])


def cli_command() -> str:
    """How to run this project's CLI from the current folder: `.venv/bin/backup-svc` in a checkout."""
    script = Path(sys.prefix) / "bin" / "backup-svc"
    if not script.exists():
        return f"{shlex.quote(sys.executable)} -m backup_svc"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def banner(env: dict[str, str], cluster: LocalCluster, *, generated: bool = False) -> str:
    """What to open and what to paste: the login, and a backup downloaded, verified and restored."""
    host = env.get("BIND_HOST", "localhost")
    shown_host = (
        "localhost"
        if host in ("localhost", "::", "0.0.0.0", "127.0.0.1", "::1")
        else (f"[{host}]" if ":" in host else host)
    )
    url = f"http://{shown_host}:{env.get('PORT') or '8080'}"
    where = "this machine only (BIND_HOST=0.0.0.0 to let others in)" if host == "localhost" else f"{host} (BIND_HOST)"
    cli = cli_command()
    file = f"{env.get('BACKUP_NAME') or DEMO_DATABASE}_backup.sql.gz"
    lines = [
        "",
        "backup_svc demo — a throwaway database that is deleted when you stop the server (Ctrl-C)",
        f"  Dashboard: {url}/   user: {env['ADMIN_USERNAME']}   password: {env['ADMIN_PASSWORD']}",
        f"  Listening: {where}; PORT={int(env.get('PORT') or 8080) + 1} ./dev.sh run for another port",
        "",
        "  A backup from a shell, checked and restored into a new database on the demo's server:",
        f"    curl -f -o {file} -H 'Authorization: Bearer {env['ADMIN_TOKEN']}' {url}/api/v1/backup",
        f"    {cli} verify {file}",
        f"    TARGET_URL='{cluster.url(RESTORE_DATABASE)}'",
        f'    {cli} restore {file} --target-url "$TARGET_URL" --create',
        "",
        f"  Database:  {cluster.url(DEMO_DATABASE)}",
    ]
    if generated:
        lines.append(
            "  (demo credentials are generated at each start; set ADMIN_PASSWORD / ADMIN_TOKEN to choose them)"
        )
    return "\n".join(lines + [""])
