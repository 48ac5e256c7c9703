"""The demo: a throwaway local PostgreSQL with sample data, and a banner that says how to use it."""
from __future__ import annotations

import secrets
import sys
from pathlib import Path

from backup_svc.config import pg_bin_dirs
from backup_svc.pg.localcluster import LocalCluster, find_server_bin_dir

DEMO_DATABASE = "shop"
DEMO_SQL = Path(__file__).with_name("demo_data.sql")


def start_demo(env: dict[str, str]) -> tuple[LocalCluster, dict[str, str]]:
    """Start the cluster, load the sample database, fill in missing credentials and print the banner."""
    if env.get("DATABASE_URL"):
        print("backup_svc: --demo ignores DATABASE_URL and uses a throwaway local PostgreSQL", file=sys.stderr)
    bin_dirs = pg_bin_dirs(env)
    print("Starting a throwaway PostgreSQL with sample data ...", flush=True)
    cluster = LocalCluster(find_server_bin_dir(bin_dirs)).start()
    try:
        env["DATABASE_URL"] = cluster.create_database(DEMO_DATABASE, DEMO_SQL.read_text())
    except BaseException:
        cluster.stop()
        raise
    env.setdefault("ADMIN_USERNAME", "admin")
    generated = [name for name in ("ADMIN_PASSWORD", "ADMIN_TOKEN") if not env.get(name)]
    for name in generated:
        env[name] = secrets.token_urlsafe(18)
    port = env.get("PORT") or "8080"
    print(
        "\n".join([
            "",
            "backup_svc demo — a throwaway database that is deleted when you stop the server (Ctrl-C)",
            f"  Dashboard: http://localhost:{port}/   user: {env['ADMIN_USERNAME']}   password: {env['ADMIN_PASSWORD']}",
            f"  With curl: curl -fOJ -H 'Authorization: Bearer {env['ADMIN_TOKEN']}' http://localhost:{port}/api/v1/backup",
            f"  Database:  {cluster.url(DEMO_DATABASE)}",
            "  (demo credentials are generated at each start; set ADMIN_PASSWORD / ADMIN_TOKEN to choose them)"
            if generated else "",
            "",
        ]),
        flush=True,
    )
    return cluster, env
