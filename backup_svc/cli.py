"""`python -m backup_svc serve | dump | check | verify | restore | sign-url`."""
from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

from .backupfile import BadBackup
from .config import ConfigError, Settings, link_signing_from_env, load_dotenv_file, pg_bin_dirs
from .database import server_facts
from .diagnose import CannotDump
from .pgtools import find_binaries
from .psqlfeed import RestoreFailed
from .restore import restore_file
from .service import backup_filename, choose_pg_dump, open_dump, restore_caveat
from .verify import verify_file

DEMO_DATABASE = "shop"
DEMO_SQL = Path(__file__).with_name("demo_data.sql")


def _refuse(problems: list[str]) -> int:
    for problem in problems:
        print(f"backup_svc: {problem}", file=sys.stderr)
    return 2


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP service under gunicorn (with --demo: on a throwaway local PostgreSQL)."""
    from .server import BackupServer

    env = dict(os.environ)
    cluster = None
    if args.demo:
        cluster, env = _start_demo(env)
    try:
        try:
            settings = Settings.from_env(env)
        except ConfigError as exc:
            return _refuse(exc.problems)
        BackupServer(settings).run()
    finally:
        if cluster is not None:
            cluster.stop()
    return 0


def _start_demo(env: dict[str, str]):
    from .localpg import LocalCluster, find_server_bin_dir

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


def cmd_dump(args: argparse.Namespace) -> int:
    """Write the same .sql.gz the API streams to a local file; on failure leave no file behind."""
    try:
        settings = Settings.from_env(require_auth=False)
    except ConfigError as exc:
        return _refuse(exc.problems)
    target = args.output or backup_filename(settings.backup_name)
    to_stdout = target == "-"
    partial = None if to_stdout else Path(f"{target}.partial")
    started = time.time()
    dump = None
    try:
        dump, facts, pg_dump = open_dump(settings, find_binaries("pg_dump", settings.pg_bin_dirs),
                                         application_name="backup_svc-cli")
        out = sys.stdout.buffer if to_stdout else open(partial, "xb")
        try:
            for chunk in dump:
                out.write(chunk)
            out.flush()
            if not to_stdout:
                os.fsync(out.fileno())
        finally:
            if not to_stdout:
                out.close()
        if partial is not None:
            os.replace(partial, target)
    except CannotDump as exc:
        print(f"backup_svc: dump failed: {exc.message}", file=sys.stderr)
        return 1
    except BaseException as exc:  # DumpBroken, a full disk, Ctrl-C: never leave a partial file
        reason = str(exc) or type(exc).__name__
        print(f"backup_svc: dump failed: {reason}", file=sys.stderr)
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    finally:
        if dump is not None:
            dump.close()
        if partial is not None and partial.exists():
            partial.unlink()
    sha256 = dump.progress.sha256
    if not to_stdout:
        size = os.path.getsize(target)
        print(f"wrote {target}: {size} bytes in {time.time() - started:.1f} s "
              f"(PostgreSQL {facts.version}, pg_dump {pg_dump.version})", file=sys.stderr)
        print(f"{sha256}  {target}")  # sha256sum's format: `sha256sum -c` can check it later
    else:
        print(f"sha256 of the backup written to stdout: {sha256}", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Check configuration, connectivity and pg_dump compatibility; say what is wrong."""
    ok = True
    try:
        settings = Settings.from_env()
        print("configuration: ok")
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"configuration: {problem}")
        try:
            settings = Settings.from_env(require_auth=False)
        except ConfigError:
            return 1
        ok = False
    installed = find_binaries("pg_dump", settings.pg_bin_dirs)
    print("pg_dump installed: " + (", ".join(f"{b.version} ({b.path})" for b in installed) or "none"))
    try:
        facts = server_facts(settings.conn, timeout_s=settings.connect_timeout_s)
        print(f"database: ok — {facts.database} on PostgreSQL {facts.version}, "
              f"{facts.size_bytes} bytes, {facts.table_count} tables")
        chosen = choose_pg_dump(facts, installed)
        print(f"pg_dump: ok — {chosen.version} at {chosen.path}")
        caveat = restore_caveat(facts, chosen)
        if caveat:
            print(f"pg_dump: warning — {caveat}")
    except CannotDump as exc:
        print(f"database: {exc.message}")
        ok = False
    return 0 if ok else 1


def cmd_verify(args: argparse.Namespace) -> int:
    """Check a backup file end to end (compression, completion line) and say what it holds."""
    try:
        report = verify_file(args.file)
    except BadBackup as exc:
        print(f"backup_svc: verify failed: {args.file}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Verify a backup file, then restore it into an (empty) database in one transaction."""
    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        report = restore_file(args.file, args.target_url, bin_dirs=pg_bin_dirs(os.environ), force=args.force,
                              create=args.create, say=say)
    except BadBackup as exc:
        print(f"backup_svc: restore refused: {args.file}: {exc}; nothing was restored", file=sys.stderr)
        return 1
    except RestoreFailed as exc:
        print(f"backup_svc: restore failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("backup_svc: restore interrupted; psql was stopped before it could commit", file=sys.stderr)
        return 130
    backup = report.backup
    print(f"restored {args.file} into {report.database!r} (PostgreSQL {report.server_version}) in "
          f"{report.seconds:.1f} s: {backup.tables_with_data} tables with data, {backup.sql_bytes} bytes of SQL "
          f"dumped from PostgreSQL {backup.server_version} by pg_dump {backup.pg_dump_version}")
    return 0


def cmd_sign_url(args: argparse.Namespace) -> int:
    """Print a signed download link (needs LINK_SECRET; the base URL from --base-url or PUBLIC_URL)."""
    from urllib.parse import urlsplit

    from .links import signed_backup_url

    try:
        secret, max_ttl = link_signing_from_env()
    except ConfigError as exc:
        return _refuse(exc.problems)
    base_url = (args.base_url or os.environ.get("PUBLIC_URL", "")).strip()
    problems = []
    if secret is None:
        problems.append("LINK_SECRET is not set: signed links are disabled")
    if not base_url:
        problems.append("no base URL: pass --base-url https://<host> or set PUBLIC_URL")
    elif urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
        problems.append(f"the base URL must look like https://<host>, got {base_url!r}")
    if not 1 <= args.ttl <= max_ttl:
        problems.append(f"--ttl must be between 1 and LINK_MAX_TTL ({max_ttl}) seconds, got {args.ttl}")
    if problems:
        return _refuse(problems)
    print(signed_backup_url(base_url, secret, args.ttl))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m backup_svc`."""
    parser = argparse.ArgumentParser(prog="python -m backup_svc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service (gunicorn)")
    serve.add_argument("--demo", action="store_true",
                       help="run on a throwaway local PostgreSQL with sample data (no DATABASE_URL needed)")
    serve.set_defaults(func=cmd_serve)
    dump = sub.add_parser("dump", help="write a backup (.sql.gz) to a local file")
    dump.add_argument("-o", "--output", help="file to write ('-' for stdout); default <name>_backup_<UTC>.sql.gz")
    dump.set_defaults(func=cmd_dump)
    check = sub.add_parser("check", help="check configuration, database and pg_dump")
    check.set_defaults(func=cmd_check)
    verify = sub.add_parser("verify", help="check that a backup file is intact and complete, and what it holds")
    verify.add_argument("file", help="the backup (.sql.gz)")
    verify.set_defaults(func=cmd_verify)
    restore = sub.add_parser("restore", help="verify a backup, then restore it with psql in one transaction")
    restore.add_argument("file", help="the backup (.sql.gz)")
    restore.add_argument("--target-url", required=True, metavar="URL",
                         help="libpq URI of the database to restore into (leave the password out to use PGPASSWORD)")
    restore.add_argument("--force", action="store_true",
                         help="restore even if the target already holds tables (objects in the backup are replaced)")
    restore.add_argument("--create", action="store_true",
                         help="create the target database first (via the server's 'postgres' database)")
    restore.set_defaults(func=cmd_restore)
    sign = sub.add_parser("sign-url", help="print a signed backup download link (needs LINK_SECRET)")
    sign.add_argument("--ttl", type=int, default=300, help="seconds the link stays valid (default 300)")
    sign.add_argument("--base-url", help="the service's public URL, e.g. https://backup.example.com "
                                         "(default: PUBLIC_URL)")
    sign.set_defaults(func=cmd_sign_url)
    args = parser.parse_args(argv)
    load_dotenv_file()
    return args.func(args)
