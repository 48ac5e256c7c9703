# backup_svc: streamed pg_dump backups over HTTP. Deploys as-is (Railway, or any container host):
# CMD, PORT from the environment and HEALTHCHECK are all in the image.
#
#   podman build --format docker -t backup_svc .                         # PGDG clients 14–18
#   podman build --format docker --build-arg PG_CLIENT_SOURCE=debian .   # the release's own client
#
# Build arguments (on Railway: service variables of the same name):
#   DEBIAN_RELEASE     Debian release of the base image (bookworm, trixie, ...)
#   PG_CLIENT_SOURCE   pgdg: postgresql-client-<major> for each of PG_CLIENT_MAJORS from the PostgreSQL
#                      project's apt repository; debian: the release's single postgresql-client
#   PG_CLIENT_MAJORS   the client majors installed side by side from PGDG; the service picks the
#                      one matching the server (same major, else the lowest newer one)
ARG DEBIAN_RELEASE=bookworm
# Fully qualified: podman and Docker resolve it alike, with no short-name lookup.
FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim

ARG PG_CLIENT_SOURCE=pgdg
ARG PG_CLIENT_MAJORS="14 15 16 17 18"

# Python from Debian; pg_dump/psql from PGDG or Debian (all land in /usr/lib/postgresql/<major>/bin,
# which PG_BIN_DIRS searches by default). For PGDG, Debian's own helper from postgresql-common writes
# the apt source with the keyring that package ships. apt lists and caches go in the same layer.
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates python3 python3-venv rclone; \
    case "$PG_CLIENT_SOURCE" in \
        pgdg) \
            apt-get install -y --no-install-recommends postgresql-common; \
            /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y; \
            packages=""; \
            for major in $PG_CLIENT_MAJORS; do packages="$packages postgresql-client-$major"; done; \
            apt-get install -y --no-install-recommends $packages ;; \
        debian) \
            apt-get install -y --no-install-recommends postgresql-client ;; \
        *) \
            echo "PG_CLIENT_SOURCE must be pgdg or debian, not '$PG_CLIENT_SOURCE'" >&2; exit 1 ;; \
    esac; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log; \
    ls /usr/lib/postgresql/*/bin/pg_dump

# Python dependencies in a venv (wheels only: no compiler in the image). A CA bundle may be handed in as
# the build secret `pipca` where PyPI is reached through a re-signing proxy; it never enters a layer.
COPY requirements.txt /app/requirements.txt
RUN --mount=type=secret,id=pipca \
    set -eux; \
    if [ -s /run/secrets/pipca ]; then export PIP_CERT=/run/secrets/pipca; fi; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --only-binary=:all: \
        -r /app/requirements.txt; \
    find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

# An unprivileged user: the service needs no root and no writable files (only /tmp).
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home --shell /usr/sbin/nologin backup_svc

# The package itself, installed into the venv like any other: `python -m backup_svc …` and `backup-svc …`
# work from any folder (a `railway ssh` session, a one-off command); its dependencies are already there.
COPY pyproject.toml README.md /src/
COPY backup_svc/ /src/backup_svc/
RUN --mount=type=secret,id=pipca \
    set -eux; \
    if [ -s /run/secrets/pipca ]; then export PIP_CERT=/run/secrets/pipca; fi; \
    /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps /src; \
    rm -rf /src; \
    find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

WORKDIR /app

# The venv first on PATH, so `python` is the venv's interpreter with the package and its dependencies.
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LANG=C.UTF-8

USER backup_svc
# The default PORT; Railway and most hosts set PORT themselves.
EXPOSE 8080

# Liveness without curl: /healthz touches no database. urlopen raises (exit 1) on anything but 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=4)"]

CMD ["python", "-m", "backup_svc", "serve"]
