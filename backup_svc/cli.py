"""`backup-svc` (or `python -m backup_svc`): serve | dump | check | verify | restore | sign-url | get |
upload | list | prune | notify-test | drill | history."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from backup_svc.commands.output import fail, note, refuse, say
from backup_svc.config import (
    ConfigError,
    Settings,
    link_signing_from_env,
    load_dotenv_file,
    pg_bin_dirs,
)

# Each command imports what it needs when it runs: `verify` and `restore` must not load Flask or psycopg.


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the HTTP service under gunicorn (with --demo: on a throwaway local PostgreSQL)."""
    from backup_svc.config import bind_host_from_env, port_from_env
    from backup_svc.serving.server import BackupServer, PortInUse, bind_listeners

    env = dict(os.environ)
    if args.demo:  # the demo is for this machine: loopback only, unless BIND_HOST says otherwise
        env["BIND_HOST"] = bind_host_from_env(env, "localhost")
    try:
        host, port = bind_host_from_env(env), port_from_env(env)
        # Every configuration problem is reported before the port is looked at: a bad DATABASE_URL or
        # schedule must not hide behind "port in use". (The demo makes its settings once its cluster runs.)
        settings = None if args.demo else Settings.from_env(env)
    except ConfigError as exc:
        from backup_svc.notify.heartbeat import ping_settings_failure

        ping_settings_failure(env, exc.problems)  # HEARTBEAT_URL hears of it: <url>/fail
        return refuse(exc.problems)
    # The port is bound before anything starts or is printed, and held until gunicorn takes it over:
    # nothing can take it while the demo's database starts, so the banner never names another server.
    try:
        listeners = bind_listeners(host, port)
    except PortInUse as exc:
        say(
            f"{exc} (another server, or an earlier ./dev.sh run?). Pick another port: "
            f"PORT={_free_port_near(port)} ./dev.sh run "
            f"(or PORT=… {'backup-svc serve --demo' if args.demo else 'backup-svc serve'})"
        )
        return 1
    cluster = None
    try:
        if args.demo:
            from backup_svc.demo import start_demo

            cluster, env = start_demo(env)
        if settings is None:
            try:
                settings = Settings.from_env(env)
            except ConfigError as exc:
                return refuse(exc.problems)
        BackupServer(settings, listeners, load_app=_web_app).run()
    finally:
        if cluster is not None:
            cluster.stop()
    return 0


def _web_app(settings: Settings):
    """The Flask app and its state, made in gunicorn's worker (Flask is imported there, not in the master)."""
    from backup_svc.web import app_and_service

    return app_and_service(settings)


def _free_port_near(port: int) -> int:
    """A port after `port` that is free on every interface right now (a suggestion, not a reservation)."""
    from backup_svc.serving.server import port_in_use

    for candidate in range(port + 1, min(port + 100, 65535)):
        if port_in_use("::", candidate) is None and port_in_use("localhost", candidate) is None:
            return candidate
    return port + 1


def cmd_dump(args: argparse.Namespace) -> int:
    """Write the same .sql.gz the API streams to a local file; on failure leave no file behind."""
    from backup_svc.dump.backup import backup_filename, write_backup
    from backup_svc.pg.diagnose import CannotDump

    try:
        settings = Settings.from_env(require_auth=False)
    except ConfigError as exc:
        return refuse(exc.problems)
    target = args.output or backup_filename(settings.backup_name)
    to_stdout = target == "-"
    partial = None if to_stdout else Path(f"{target}.partial")
    try:
        if to_stdout:
            written = write_backup(settings.dump, sys.stdout.buffer, application_name="backup_svc-cli")
            sys.stdout.buffer.flush()
        else:
            with open(partial, "xb") as out:
                written = write_backup(settings.dump, out, application_name="backup_svc-cli")
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, target)
    except CannotDump as exc:
        return fail(f"dump failed: {exc.message}")
    except BaseException as exc:  # DumpBroken, a full disk, Ctrl-C: never leave a partial file
        reason = str(exc) or type(exc).__name__
        say(f"dump failed: {reason}")
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    finally:
        if partial is not None and partial.exists():
            partial.unlink()
    if not to_stdout:
        note(
            f"wrote {target}: {written.gzip_bytes} bytes in {written.seconds:.1f} s "
            f"(PostgreSQL {written.facts.version}, pg_dump {written.pg_dump.version})"
        )
        print(f"{written.sha256}  {target}")  # sha256sum's format: `sha256sum -c` can check it later
    else:
        note(f"sha256 of the backup written to stdout: {written.sha256}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check a backup file (or stored object) end to end (compression, completion line); say what it holds."""
    if args.file.startswith(("s3://", "rclone:")):
        from backup_svc.commands.from_bucket import verify_stored

        return verify_stored(args.file)
    from backup_svc.crypto.settings import reading_opener
    from backup_svc.files.reader import BadBackup
    from backup_svc.files.verify import verify_file

    try:
        report = verify_file(args.file, reading_opener(args.file, None, os.environ))
    except (BadBackup, ValueError) as exc:
        return fail(f"verify failed: {args.file}: {exc}")
    print("\n".join(report.lines()))
    return 0


def _restore_action(args: argparse.Namespace) -> str | None:
    chosen = [
        a
        for a, on in (("replace", args.replace), ("list", args.list_kept), ("undo", args.undo), ("drop", args.drop))
        if on
    ]
    return chosen[0] if len(chosen) == 1 else ("many" if chosen else None)


def cmd_restore_kept(args: argparse.Namespace, action: str) -> int:
    """`restore SOURCE --replace`, `--list-kept`, `--undo NAME`, `--drop NAME` on DATABASE_URL's server."""
    from backup_svc.config import parse_database_url, restore_from_env
    from backup_svc.restoring.server import ServerLink
    from backup_svc.restoring.shell import run
    from backup_svc.storage.settings import storage_settings

    problems: list[str] = []
    if action == "many":
        problems.append("choose one of --replace, --list-kept, --undo NAME, --drop NAME")
    if args.target_url or args.create or args.force:
        problems.append(
            "--target-url, --create and --force restore into a database you name; --replace, "
            "--list-kept, --undo and --drop work on DATABASE_URL's database"
        )
    if args.jobs != 1:
        problems.append("--jobs goes with --target-url URL --create (a restore into a new database you name)")
    if (action == "replace") != bool(args.file):
        problems.append("--replace needs SOURCE (a .sql.gz file or s3://bucket/key); the others take none")
    url = os.environ.get("DATABASE_URL", "").strip()
    conn = None
    try:
        conn = parse_database_url(url) if url else None
    except ValueError as exc:
        problems.append(f"DATABASE_URL {exc}")
    if url == "":
        problems.append("DATABASE_URL is not set: it names the live database (and its server)")
    settings = restore_from_env(os.environ, problems)
    storage = storage_settings(os.environ, problems)
    if problems:
        return refuse(problems)
    started = time.time()
    status = run(
        action,
        ServerLink(conn),
        name=args.undo or args.drop,
        source=args.file,
        yes=args.yes,
        bin_dirs=pg_bin_dirs(os.environ),
        swap_timeout_s=settings.swap_timeout_s,
    )
    if action != "list" and storage is not None:
        # A shell's replace, undo or drop belongs in the same durable history as the dashboard's.
        from backup_svc.history.hooks import command_history, flush_before_exit, record_audit

        history = command_history("restore", storage)
        record_audit(
            history,
            event="restore" if action == "replace" else action,
            started=started,
            outcome="ok" if status == 0 else "failed",
            actor=os.environ.get("USER") or "shell",
            name=args.file or args.undo or args.drop,
            mode=action,
            database=conn.dbname,
            exit_status=status,
        )
        flush_before_exit(history, say)
    return status


def cmd_restore(args: argparse.Namespace) -> int:
    """Verify a backup file (or stored object), then restore it into an (empty) database in one transaction."""
    action = _restore_action(args)
    if action is not None:
        return cmd_restore_kept(args, action)
    if not args.file or not args.target_url:
        return refuse(["restore needs SOURCE and --target-url URL (or --replace, --list-kept, --undo, --drop)"])
    if args.yes:
        return refuse(["--yes goes with --replace, --undo or --drop"])
    if args.file.startswith(("s3://", "rclone:")):
        from backup_svc.commands.from_bucket import restore_stored

        return restore_stored(args)
    from backup_svc.commands.exits import Terminated, restore_stopped, sigterm_raises
    from backup_svc.crypto.settings import reading_opener
    from backup_svc.files.psqlfeed import RestoreFailed
    from backup_svc.files.reader import BadBackup
    from backup_svc.files.restore import restore_file

    try:
        with sigterm_raises():
            report = restore_file(
                args.file,
                args.target_url,
                bin_dirs=pg_bin_dirs(os.environ),
                force=args.force,
                create=args.create,
                say=note,
                opener=reading_opener(args.file, None, os.environ),
                jobs=args.jobs,
            )
    except (BadBackup, ValueError) as exc:
        return fail(f"restore refused: {args.file}: {exc}; nothing was restored")
    except RestoreFailed as exc:
        return fail(f"restore failed: {exc}")
    except (KeyboardInterrupt, Terminated) as exc:
        return restore_stopped(exc, jobs=args.jobs, create=args.create)
    print(report.summary(args.file))
    return 0


def _jobs(text: str) -> int:
    """--jobs N: a whole number from 1 to 64."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of connections, got {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be between 1 and 64, got {value}")
    return value


def cmd_sign_url(args: argparse.Namespace) -> int:
    """Print a signed download link (needs LINK_SECRET; the base URL from --base-url or PUBLIC_URL)."""
    from urllib.parse import urlsplit

    from backup_svc.links import signed_backup_url

    try:
        secret, max_ttl = link_signing_from_env()
    except ConfigError as exc:
        return refuse(exc.problems)
    base_url = (args.base_url or os.environ.get("PUBLIC_URL", "")).strip()
    problems = []
    if secret is None:
        problems.append("LINK_SECRET is not set: signed links are disabled")
    if base_url and (urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc):
        problems.append(f"the base URL must look like https://<host>, got {base_url!r}")
    if not 1 <= args.ttl <= max_ttl:
        problems.append(f"--ttl must be between 1 and LINK_MAX_TTL ({max_ttl}) seconds, got {args.ttl}")
    if problems:
        return refuse(problems)
    if not base_url:
        # A relative link is still useful (append it to the URL you use); say so, off stdout.
        say(
            "no --base-url and no PUBLIC_URL: printed the link without a host; put the "
            "service's URL in front of it, or pass --base-url https://<host>"
        )
    print(signed_backup_url(base_url, secret, args.ttl))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m backup_svc`."""
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    prog = "python -m backup_svc" if invoked in ("", "__main__.py", "-c") else invoked
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service (gunicorn)")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="run on a throwaway local PostgreSQL with sample data (no DATABASE_URL needed)",
    )
    serve.set_defaults(func=cmd_serve)
    dump = sub.add_parser("dump", help="write a backup (.sql.gz) to a local file")
    dump.add_argument("-o", "--output", help="file to write ('-' for stdout); default <name>_backup_<UTC>.sql.gz")
    dump.set_defaults(func=cmd_dump)
    from backup_svc.commands.check import add_check_command

    add_check_command(sub)
    verify = sub.add_parser("verify", help="check that a backup file is intact and complete, and what it holds")
    verify.add_argument(
        "file", help="the backup (.sql.gz), or a stored one: s3://bucket/key or rclone:remote:path/name"
    )
    verify.set_defaults(func=cmd_verify)
    restore = sub.add_parser("restore", help="verify a backup, then restore it with psql in one transaction")
    restore.add_argument(
        "file", nargs="?", help="the backup (.sql.gz), or a stored one: s3://bucket/key or rclone:remote:path/name"
    )
    restore.add_argument(
        "--target-url",
        metavar="URL",
        help="libpq URI of the database to restore into (leave the password out to use PGPASSWORD)",
    )
    restore.add_argument(
        "--force",
        action="store_true",
        help="restore even if the target already holds tables (objects in the backup are replaced)",
    )
    restore.add_argument(
        "--create", action="store_true", help="create the target database first (via the server's 'postgres' database)"
    )
    restore.add_argument(
        "--jobs",
        type=_jobs,
        default=1,
        metavar="N",
        help="with --create: load the data and build the indexes on N connections (default 1: "
        "one transaction); into an existing database the restore stays serial",
    )
    restore.add_argument(
        "--replace",
        action="store_true",
        help="restore into a new database, check it, then swap it in for DATABASE_URL's database "
        "(kept as <db>_before_restore_<time>)",
    )
    restore.add_argument(
        "--yes",
        action="store_true",
        help="with --replace, --undo, --drop: do not ask for the database's name (scripts)",
    )
    restore.add_argument(
        "--list-kept",
        action="store_true",
        help="list the databases restores made or kept beside DATABASE_URL's database",
    )
    restore.add_argument("--undo", metavar="NAME", help="swap the kept database NAME back in (the same guarded swap)")
    restore.add_argument("--drop", metavar="NAME", help="drop the kept database NAME (asks for its name)")
    restore.set_defaults(func=cmd_restore)
    sign = sub.add_parser("sign-url", help="print a signed backup download link (needs LINK_SECRET)")
    sign.add_argument("--ttl", type=int, default=300, help="seconds the link stays valid (default 300)")
    sign.add_argument(
        "--base-url", help="the service's public URL, e.g. https://backup.example.com (default: PUBLIC_URL)"
    )
    sign.set_defaults(func=cmd_sign_url)
    from backup_svc.commands.storage import add_storage_commands

    add_storage_commands(sub)
    from backup_svc.commands.get import add_get_command

    add_get_command(sub)
    from backup_svc.commands.notify import add_commands as add_notify_commands

    add_notify_commands(sub)
    from backup_svc.commands.history import add_history_command

    add_history_command(sub)
    args = parser.parse_args(argv)
    load_dotenv_file()
    return args.func(args)
