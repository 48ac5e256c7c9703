"""Building the image with podman on a machine that cannot reach Docker Hub.

The Dockerfile starts from `docker.io/library/debian:<release>-slim`. Where that image is missing it is
made locally — debootstrap a minimal Debian, import it under the official name — and then reused
from podman's storage. pip inside the build gets the host's CA bundle as a build secret (PyPI may be
reached through a re-signing proxy); a secret never lands in a layer.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"

_SOURCES = """\
Types: deb
URIs: {mirror}
Suites: {release} {release}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: {security}
Suites: {release}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


# What a build and a run need besides podman itself, and the Debian package that brings each. Checked
# before anything starts, so a missing one is named here rather than deep inside a `podman build`
# (without iptables every RUN step dies with "netavark: No such file or directory").
REQUIRED_TOOLS = {
    "podman": ("podman", ["podman"]),
    "runc": ("runc", ["runc"]),  # the runtime containers.conf selects
    "conmon": ("conmon", ["conmon", "/usr/libexec/podman/conmon", "/usr/lib/podman/conmon"]),
    "netavark": ("netavark", ["/usr/lib/podman/netavark", "/usr/libexec/podman/netavark"]),
    "iptables": ("iptables", ["iptables", "/usr/sbin/iptables", "/sbin/iptables"]),
    "debootstrap": ("debootstrap", ["debootstrap", "/usr/sbin/debootstrap"]),
}


def missing_tools() -> list[str]:
    """The Debian packages of REQUIRED_TOOLS that are not installed (empty when all are there)."""

    def found(candidates: list[str]) -> bool:
        return any(os.access(c, os.X_OK) if c.startswith("/") else shutil.which(c) for c in candidates)

    return [package for package, candidates in REQUIRED_TOOLS.values() if not found(candidates)]


def require_tools() -> None:
    """Raise at once, naming what to install, when podman cannot build or run here."""
    missing = missing_tools()
    if missing:
        raise RuntimeError(
            f"the image test needs {', '.join(missing)}, which this machine lacks: "
            f"apt-get install {' '.join(missing)} (./dev.sh test installs them)"
        )


def podman(
    *args: str,
    timeout: float = 900,
    check: bool = True,
    env: dict[str, str] | None = None,
    stdin=None,
    text: bool = True,
) -> subprocess.CompletedProcess:
    """Run podman with the project's containers.conf; raise with its output when it fails and `check`.

    `text=False` keeps stdout as bytes (a backup written to stdout).
    """
    full_env = {**os.environ, **(env or {}), "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    result = subprocess.run(
        ["podman", *args], env=full_env, stdin=stdin, capture_output=True, text=text, timeout=timeout
    )
    if check and result.returncode != 0:
        stderr = result.stderr if text else result.stderr.decode(errors="replace")
        raise RuntimeError(f"podman {' '.join(args[:2])} failed ({result.returncode}): {stderr[-4000:]}")
    return result


def host_mirrors() -> tuple[str, str]:
    """The Debian archive and security mirrors this host's apt uses (the ones known to be reachable)."""
    uris: list[str] = []
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        uris += re.findall(r"^\s*URIs:\s*(\S+)", text, re.M)
        uris += re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M)
    main = next((u for u in uris if u.rstrip("/").endswith("/debian")), DEFAULT_MIRROR)
    security = next((u for u in uris if u.rstrip("/").endswith("/debian-security")), DEFAULT_SECURITY_MIRROR)
    return main, security


def ensure_base_image(release: str) -> bool:
    """Make `debian:<release>-slim` (and `debian:<release>`) unless podman has it; True when it was made."""
    slim = f"docker.io/library/debian:{release}-slim"
    if podman("image", "exists", slim, check=False).returncode == 0:
        return False
    mirror, security = host_mirrors()
    rootfs = Path(tempfile.mkdtemp(prefix="backup_svc-rootfs-", dir="/var/tmp"))
    try:
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", release, str(rootfs), mirror],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"debootstrap {release} from {mirror} failed: {result.stdout[-3000:]}{result.stderr[-2000:]}"
            )
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
            _SOURCES.format(mirror=mirror, security=security, release=release)
        )
        # Like the official image: no host resolver config, no package lists, no downloaded debs.
        (rootfs / "etc/resolv.conf").unlink(missing_ok=True)
        for folder in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for entry in (rootfs / folder).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            podman("import", "--change", 'CMD ["bash"]', "-", slim, stdin=tar.stdout)
        finally:
            tar.stdout.close()
            tar.wait()
        podman("tag", slim, f"docker.io/library/debian:{release}")
    finally:
        _unmount_below(rootfs)
        shutil.rmtree(rootfs, ignore_errors=True)
    return True


def _unmount_below(root: Path) -> None:
    """debootstrap mounts /proc and /sys inside the rootfs; a failed run may leave them mounted, and
    deleting the folder must never walk into the host's /proc."""
    with open("/proc/mounts") as f:
        targets = [line.split()[1] for line in f if line.split()[1].startswith(f"{root}/")]
    for target in sorted(targets, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)


def build_image(context: Path, tag: str, build_args: dict[str, str]) -> None:
    """`podman build` in docker format (OCI images drop HEALTHCHECK), reusing cached layers."""
    args = ["build", "--format", "docker", "--tag", tag, "--file", str(context / "Dockerfile")]
    for name, value in build_args.items():
        args += ["--build-arg", f"{name}={value}"]
    if os.path.isfile(HOST_CA_BUNDLE) and os.path.getsize(HOST_CA_BUNDLE) > 0:
        args += ["--secret", f"id=pipca,src={HOST_CA_BUNDLE}"]
    podman(*args, str(context), timeout=1800)
