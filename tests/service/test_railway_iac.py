""".railway/railway.ts: type-checked with tsc against the pinned `railway` SDK, then evaluated with the
SDK (as the Railway CLI does: the default export called with the SDK's context and project()) and the
resulting definition held to what the service needs: healthcheck, draining that covers the graceful
timeout, restart policy, the cron service's schedule and command, references instead of secrets, and
the bucket's credentials under the names backup_svc reads.

node, npm and `.railway/node_modules` come from `./dev.sh test` (npm ci --prefix .railway).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from backup_svc.config import Settings
from backup_svc.draining import DRAIN_MARGIN_S

from tests import REPO

RAILWAY_DIR = REPO / ".railway"
NODE_MODULES = RAILWAY_DIR / "node_modules"
TSC = NODE_MODULES / ".bin" / "tsc"
EVALUATOR = Path(__file__).with_name("railway_eval.mjs")
SNIPPET_MARKER = "// ---- backup_svc ----"
MIGRATED_MARKER = "// railway config migrate --service backups, corrected"
GUIDE = REPO / "docs" / "deploy-railway.md"
# The notification variables (docs/notifications.md) the service that takes the backups carries.
ALERT_VARIABLES = ("HEARTBEAT_URL", "SMTP_URL", "NOTIFY_EMAIL_TO", "NOTIFY_EMAIL_FROM", "NOTIFY_WEBHOOK_URL")
# What `railway config migrate` turns into fields (railwayapp/cli src/commands/config/migrate.rs, 5.43.1,
# emit_railway_ts): every other railway.json key is a comment or nothing, and the guide must correct it.
MIGRATE_CARRIES = {
    "buildCommand",
    "startCommand",
    "healthcheckPath",
    "healthcheckTimeout",
    "numReplicas",
    "region",
    "multiRegionConfig",
}

WEB, CRON = "service.backups", "service.backups-cron"
SECRET_NAME = re.compile(r"TOKEN|PASSWORD|SECRET|_KEY")
# The storage names of the contract ("Object storage") and the bucket output each one must reference.
BUCKET_OUTPUTS = {
    "AWS_ENDPOINT_URL": "ENDPOINT",
    "AWS_ACCESS_KEY_ID": "ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION": "REGION",
}


def _need_toolchain() -> None:
    missing = [
        what
        for what, present in (
            ("node", shutil.which("node")),
            ("the pinned SDK in .railway/node_modules (npm ci --prefix .railway)", (NODE_MODULES / "railway").is_dir()),
            ("tsc in .railway/node_modules", TSC.exists()),
        )
        if not present
    ]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run ./dev.sh test, which installs them")


def _run(args: list, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=180)


def typecheck(source: str, folder: Path) -> subprocess.CompletedProcess:
    """tsc over `source` as a railway.ts in `folder`, with .railway/tsconfig.json; emits JS to folder/out."""
    _need_toolchain()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "railway.ts").write_text(source)
    (folder / "package.json").write_text('{"type": "module"}\n')
    if not (folder / "node_modules").exists():
        (folder / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    (folder / "tsconfig.json").write_text(
        json.dumps(
            {
                "extends": str(RAILWAY_DIR / "tsconfig.json"),
                "compilerOptions": {"noEmit": False, "outDir": "out"},
                "files": ["railway.ts"],
            }
        )
    )
    return _run([TSC, "-p", folder / "tsconfig.json"], folder)


def evaluate(source: str, folder: Path) -> dict:
    """Type-check `source`, then evaluate it with the SDK; the ProjectDefinition as plain JSON."""
    checked = typecheck(source, folder)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    shutil.copy(EVALUATOR, folder / EVALUATOR.name)
    result = _run(["node", EVALUATOR.name, "out/railway.js"], folder)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["project"]


def resources(definition: dict) -> dict[str, dict]:
    """The definition's resources by address (service.backups, bucket.…, database.…)."""
    return {resource["address"]: resource for resource in definition["resources"]}


def typescript_blocks(markdown: str) -> list[str]:
    """The ```ts code blocks of a Markdown text."""
    return re.findall(r"^```ts\n(.*?)^```$", markdown, re.M | re.S)


def backup_part(source: str) -> str:
    """The part of a railway.ts that an existing project pastes: from the marker line to the end."""
    return source[source.index(SNIPPET_MARKER) :]


def docs_existing_project() -> str:
    """docs/deploy-railway.md's existing-project example with the backup_svc part pasted below it."""
    blocks = typescript_blocks(GUIDE.read_text())
    example = next(block for block in blocks if "...backupServices(db" in block and SNIPPET_MARKER not in block)
    return example + "\n" + next(block for block in blocks if block.startswith(SNIPPET_MARKER))


def web_and_cron(source: str) -> str:
    """railway.ts switched to the other shape, as the guide says: `cronService: true`."""
    switched = source.replace(
        "backupServices(db, { repository: REPOSITORY })",
        "backupServices(db, { repository: REPOSITORY, cronService: true })",
    )
    assert switched != source
    return switched


SOURCES = {
    "railway.ts": lambda: (RAILWAY_DIR / "railway.ts").read_text(),
    "railway.ts, web + cron": lambda: web_and_cron((RAILWAY_DIR / "railway.ts").read_text()),
    "docs: existing project": docs_existing_project,
}


def backup_services(definition: dict) -> list[str]:
    """The addresses of the backup services the definition has: `backups`, and `backups-cron` in the web +
    cron shape; fails when `backups` is missing, so that a loop over them always checks something."""
    services = sorted(set(resources(definition)) & {WEB, CRON})
    assert WEB in services, services
    return services


@pytest.fixture(scope="module", params=list(SOURCES))
def definition(request, tmp_path_factory) -> dict:
    """The evaluated definition of .railway/railway.ts (both shapes), and of the guide's existing-project example."""
    return evaluate(SOURCES[request.param](), tmp_path_factory.mktemp("iac"))


def takes_backups(definition: dict) -> dict:
    """The service that runs the stored backups: `backups-cron` when there is one, else `backups`."""
    found = resources(definition)
    return found.get(CRON) or found[WEB]


def test_railway_ts_typechecks_in_place_with_the_pinned_sdk():
    _need_toolchain()
    pinned = json.loads((RAILWAY_DIR / "package.json").read_text())["devDependencies"]
    installed = json.loads((NODE_MODULES / "railway" / "package.json").read_text())["version"]
    assert pinned["railway"] == installed == "3.11.0"
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned["typescript"]), "typescript must be pinned exactly"
    lock = json.loads((RAILWAY_DIR / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/railway"]["version"] == "3.11.0"

    result = _run([TSC, "-p", RAILWAY_DIR / "tsconfig.json"], RAILWAY_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tsc_rejects_what_the_sdk_types_forbid(tmp_path):
    """The type check is real: a restart policy Railway does not have fails it, naming the line."""
    source = (RAILWAY_DIR / "railway.ts").read_text()
    broken = source.replace('restartPolicyType: "ON_FAILURE"', 'restartPolicyType: "SOMETIMES"')
    assert broken != source
    result = typecheck(broken, tmp_path)
    assert result.returncode != 0
    assert "SOMETIMES" in result.stdout and "railway.ts(" in result.stdout


def test_guide_shows_the_backup_part_of_railway_ts_as_it_is():
    """docs/deploy-railway.md's snippet for an existing project is the file's own part, unchanged."""
    blocks = typescript_blocks((REPO / "docs" / "deploy-railway.md").read_text())
    pasted = [block for block in blocks if block.startswith(SNIPPET_MARKER)]
    assert pasted == [backup_part((RAILWAY_DIR / "railway.ts").read_text())]


def test_guide_example_keeps_the_existing_app_and_adds_the_backup_services(tmp_path):
    found = resources(evaluate(docs_existing_project(), tmp_path))
    assert found["service.app"]["variables"]["DATABASE_URL"]["resource"] == "database.Postgres"
    assert found["service.app"]["source"]["repo"] == "acme/app"
    assert "source" not in found[WEB] and CRON not in found  # deployed with `railway up`, one service


def test_a_repository_gives_both_services_a_github_source(tmp_path):
    """With REPOSITORY set (a fork Railway can read), the services build it; "" (the default) needs no fork."""
    source = web_and_cron((RAILWAY_DIR / "railway.ts").read_text())
    assert 'const REPOSITORY = "";' in source
    found = resources(
        evaluate(source.replace('const REPOSITORY = "";', 'const REPOSITORY = "acme/backup_svc";'), tmp_path)
    )
    for address in (WEB, CRON):
        assert found[address]["source"] == {"type": "github", "repo": "acme/backup_svc", "branch": "main"}


def test_project_holds_the_database_the_bucket_and_the_backups_service(definition):
    assert {"database.Postgres", "bucket.backups-bucket", WEB} <= set(resources(definition))
    for address in (WEB, CRON):
        service = resources(definition).get(address)
        if service is None:
            continue
        assert service["kind"] == "empty" and "source" not in service  # `railway up` deploys the checkout
        assert service["build"] == {"builder": "DOCKERFILE", "dockerfilePath": "Dockerfile"}
        assert (REPO / service["build"]["dockerfilePath"]).is_file()


def test_web_service_healthcheck_restart_and_draining_cover_the_grace(definition):
    web = resources(definition)[WEB]
    deploy, variables = web["deploy"], web["variables"]

    assert deploy["healthcheckPath"] == "/healthz"
    assert "/healthz" in (REPO / "Dockerfile").read_text()  # the same path the image checks
    assert deploy["restartPolicyType"] == "ON_FAILURE"
    assert deploy["restartPolicyMaxRetries"] >= 1
    assert "cronSchedule" not in deploy and "startCommand" not in deploy  # the image's CMD serves

    grace = int(variables["GRACEFUL_TIMEOUT"]["value"])
    default_grace = Settings.__dataclass_fields__["graceful_timeout_s"].default
    assert grace >= default_grace
    assert isinstance(deploy["drainingSeconds"], int)
    assert deploy["drainingSeconds"] >= grace + DRAIN_MARGIN_S
    # The service sees the same draining that Railway applies.
    assert variables["RAILWAY_DEPLOYMENT_DRAINING_SECONDS"] == {
        "type": "literal",
        "value": str(deploy["drainingSeconds"]),
    }
    assert variables["TRUSTED_PROXY_HOPS"] == {"type": "literal", "value": "1"}


def test_exactly_one_service_takes_the_scheduled_backups(definition):
    """BACKUP_SCHEDULE in `backups` (the default), or a cron service running `upload` — never both."""
    found = resources(definition)
    web = found[WEB]
    cron = found.get(CRON)
    if cron is None:
        schedule = web["variables"]["BACKUP_SCHEDULE"]["value"]
        assert "BACKUP_EXPECTED_SCHEDULE" not in web["variables"]
    else:
        assert "BACKUP_SCHEDULE" not in web["variables"]
        deploy = cron["deploy"]
        assert deploy["startCommand"] == "python -m backup_svc upload"
        schedule = deploy["cronSchedule"]
        # The web service watches the cron service's schedule: staleness alarm and overdue warning.
        assert web["variables"]["BACKUP_EXPECTED_SCHEDULE"] == {"type": "literal", "value": schedule}
        # A cron service exits when done: no healthcheck to fail, no restart loop.
        assert "healthcheckPath" not in deploy
        assert deploy.get("restartPolicyType") != "ALWAYS"
        assert not {"ADMIN_TOKEN", "ADMIN_PASSWORD"} & set(cron["variables"])  # it serves nothing
    fields = schedule.split()
    assert len(fields) == 5 and all(re.fullmatch(r"[0-9*/,-]+", field) for field in fields)
    assert re.fullmatch(
        r"(last|daily|weekly|monthly)=\d+(,(last|daily|weekly|monthly)=\d+)*",
        takes_backups(definition)["variables"]["BACKUP_RETENTION"]["value"],
    )


def test_the_service_that_takes_backups_carries_the_alerts(definition):
    """A cron service without alert variables would fail in silence (the newcomer's nightly backups that
    stopped without anyone being told): the alerts sit where the backups run, kept by preserve()."""
    for name in ALERT_VARIABLES:
        assert takes_backups(definition)["variables"][name] == {"type": "preserve"}, name
        # The web service reports "Back up to storage now" through them too.
        assert resources(definition)[WEB]["variables"][name] == {"type": "preserve"}, name


def test_the_guide_lists_the_alert_variables_and_recommends_the_heartbeat():
    guide = GUIDE.read_text()
    table = guide.split("### Variables of the `backups` service", 1)[1].split("\n\n", 2)[1]
    for name in ALERT_VARIABLES:
        assert f"`{name}`" in table, name
    assert re.search(r"^\| `HEARTBEAT_URL` \| \*\*recommended\*\*", table, re.M)
    assert "BACKUP_SCHEDULE" in table and "BACKUP_STORAGE_URL" in table


def test_database_url_is_a_reference_to_the_database(definition):
    for address in backup_services(definition):
        assert resources(definition)[address]["variables"]["DATABASE_URL"] == {
            "type": "reference",
            "resource": "database.Postgres",
            "output": "DATABASE_URL",
        }


def test_no_secret_is_written_in_the_definition(definition):
    # every resource's variables (the guide's example app too), not only the backup services'
    with_variables = [address for address, resource in resources(definition).items() if "variables" in resource]
    assert set(backup_services(definition)) <= set(with_variables)
    # and nowhere else in it (a database image, a bucket's config) a URL with credentials
    assert not re.search(r"://[^/@\s\"]*:[^/@\s\"]*@", json.dumps(definition))
    for address in with_variables:
        for name, value in resources(definition)[address]["variables"].items():
            if value["type"] == "literal":
                assert not SECRET_NAME.search(name), f"{address} {name} is a literal"
                assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value["value"]), f"{address} {name} holds credentials"
            elif value["type"] == "raw":
                assert set(value["value"]) <= {"generator", "isSealed", "description"}, f"{address} {name}: {value}"
                assert value["value"]["generator"]
            else:
                assert value["type"] in ("reference", "preserve"), f"{address} {name}: {value}"
    web = resources(definition)[WEB]["variables"]
    assert web["ADMIN_PASSWORD"] == {"type": "preserve"}
    assert web["ADMIN_TOKEN"]["type"] in ("raw", "preserve")


def test_bucket_credentials_reach_every_backup_service_under_the_storage_names(definition):
    """The one `backups` service, and `backups-cron` too in the web + cron shape."""
    bucket = resources(definition)["bucket.backups-bucket"]
    for address in backup_services(definition):
        variables = resources(definition)[address]["variables"]
        for name, output in BUCKET_OUTPUTS.items():
            assert variables[name] == {"type": "reference", "resource": bucket["address"], "output": output}
        assert variables["BACKUP_STORAGE_URL"] == {
            "type": "literal",
            "value": f"s3://${{{{{bucket['name']}.BUCKET}}}}/",
        }
        assert variables["AWS_S3_URL_STYLE"]["value"] in ("path", "virtual")


def test_railway_json_says_what_railway_ts_says(definition):
    """railway.json (no longer read by Railway since 2026-12-01; kept as `railway config migrate`'s input)
    must not drift from the IaC definition of the `backups` service."""
    legacy = json.loads((REPO / "railway.json").read_text())
    web = resources(definition)[WEB]

    assert legacy["build"] == web["build"]
    assert set(legacy["deploy"]) == {
        "healthcheckPath",
        "healthcheckTimeout",
        "restartPolicyType",
        "restartPolicyMaxRetries",
        "drainingSeconds",
    }
    for setting in legacy["deploy"]:
        assert legacy["deploy"][setting] == web["deploy"][setting], setting
    assert isinstance(legacy["deploy"]["drainingSeconds"], int)  # Railway rejects a string here


def test_the_guides_settings_table_says_what_railway_json_says():
    legacy = json.loads((REPO / "railway.json").read_text())
    guide = GUIDE.read_text()
    table = guide.split("## The settings, whichever way you set them", 1)[1].split("\n\n", 2)[1]
    rows = {row.split("|")[1].strip(): row.split("|")[2].strip() for row in table.splitlines()[2:]}
    build, deploy = legacy["build"], legacy["deploy"]
    assert rows["builder / Dockerfile path"] == f"{build['builder'].capitalize()} / `{build['dockerfilePath']}`"
    assert rows["healthcheck path (timeout)"] == f"`{deploy['healthcheckPath']}` ({deploy['healthcheckTimeout']} s)"
    assert rows["draining time"] == (
        f"{deploy['drainingSeconds']} s (`RAILWAY_DEPLOYMENT_DRAINING_SECONDS={deploy['drainingSeconds']}`)"
    )
    assert deploy["restartPolicyType"] == "ON_FAILURE"
    assert rows["restart policy"] == f"on failure, {deploy['restartPolicyMaxRetries']} retries"


def test_the_guide_corrects_every_key_migrate_drops_and_its_result_matches_railway_json(tmp_path):
    """Each railway.json key that `railway config migrate` does not turn into a field is named in the
    guide's corrections table, and the guide's corrected block evaluates to railway.json's settings."""
    legacy = json.loads((REPO / "railway.json").read_text())
    guide = GUIDE.read_text()
    section = guide.split("## `railway.json` after Config as Code's cutoff", 1)[1].split("\n## ", 1)[0]
    dropped = {key for part in ("build", "deploy") for key in legacy[part] if key not in MIGRATE_CARRIES}
    assert dropped == {"builder", "dockerfilePath", "restartPolicyType", "restartPolicyMaxRetries", "drainingSeconds"}
    corrections = section.split("| correction |", 1)[1].split("\n\n", 1)[0]
    for key in dropped:
        assert re.search(rf"`(build|deploy)\.{key}`", corrections), key
    assert "stopped reading" in section and "no longer a way to deploy" in section

    [block] = [b for b in typescript_blocks(guide) if b.startswith(MIGRATED_MARKER)]
    migrated = resources(evaluate(block, tmp_path))[WEB]
    assert migrated["build"] == legacy["build"]
    assert migrated["deploy"] == legacy["deploy"]


def test_the_guide_offers_railway_json_as_no_way_to_deploy():
    guide = GUIDE.read_text()
    assert "Path 3" not in guide
    ways = guide.split("Give Railway these settings in **one** of two ways:", 1)[1].split("\n\n", 2)[1]
    assert "railway.json" not in ways


def test_every_link_inside_the_guide_lands_on_a_heading():
    from backup_svc.web.docs import heading_slug

    guide = GUIDE.read_text()
    slugs = {heading_slug(heading) for heading in re.findall(r"^#+ (.*)$", guide, re.M)}
    assert set(re.findall(r"\]\(#([^)]+)\)", guide)) <= slugs
