"""Helpers for tests that build and run healwatch's image with podman, on this machine as it is.

No registry can be reached here, so the image's base cannot be pulled: a base of the same Python
(Debian bookworm's python3 is 3.11, like ``python:3.11-slim``) is made from Debian's archive with
debootstrap once, kept as a tarball outside the repository, and imported into podman. The
Dockerfile is built unchanged; only its ``PYTHON_IMAGE`` build argument names that base.

Podman runs here as root with three settings (each found by trial on this machine):
``--runtime runc`` (crun refuses the hybrid cgroup layout), ``--network host`` (the netavark
bridge is unavailable) and ``default_ulimits = []`` (setting RLIMIT_NOFILE is refused). They go
in a ``containers.conf`` of the tests' own, named by ``CONTAINERS_CONF``; nothing in /etc changes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.processes import require_binary

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get("HEALWATCH_TEST_CACHE", "/var/cache/healwatch-test"))
# Bump the suffix when the recipe below changes, so a stale cached base is not reused.
BASE_RECIPE = "bookworm-python3-v2"
BASE_TARBALL = CACHE_DIR / f"base-{BASE_RECIPE}.tar"
# python:3.11-slim's environment; the import adds it (bump the suffix when it changes).
BASE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")
BASE_IMAGE = f"localhost/healwatch-test-base:{BASE_RECIPE}-env1"
IMAGE = "localhost/healwatch:0.1.0"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

CONTAINERS_CONF = """\
# healwatch's tests: what podman needs on this machine (see tests/containerparts.py).
[containers]
default_ulimits = []
netns = "host"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def podman_env() -> dict[str, str]:
    """The environment for every podman call: the tests' containers.conf, nothing else changed."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    conf = CACHE_DIR / "containers.conf"
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def podman(*args: str, timeout_s: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one podman command and return its result; a failure shows podman's own words."""
    result = subprocess.run(
        [require_binary("podman"), *args], env=podman_env(), capture_output=True, text=True,
        timeout=timeout_s, stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


@contextmanager
def _cache_lock() -> Iterator[None]:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _make_base_tarball() -> None:
    """Debootstrap a minimal bookworm with python3 and make it look like python:3.11-slim to a Dockerfile."""
    debootstrap = require_binary("debootstrap")
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as work:
        rootfs = Path(work) / "rootfs"
        subprocess.run(
            [debootstrap, "--variant=minbase", "--include=python3,python3-venv,python3-pip", "bookworm",
             str(rootfs), DEBIAN_MIRROR],
            check=True, capture_output=True, timeout=900, stdin=subprocess.DEVNULL,
        )
        # python:3.11-slim has `python` and `pip`, lets pip install into the system Python and ships no apt lists.
        (rootfs / "usr/bin/python").symlink_to("python3")
        (rootfs / "usr/lib/python3.11/EXTERNALLY-MANAGED").unlink(missing_ok=True)
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)
        # This machine reaches PyPI through its own CA bundle: the test base trusts it, for pip only.
        shutil.copyfile(HOST_CA_BUNDLE, rootfs / "etc/healwatch-test-ca.crt")
        (rootfs / "etc/pip.conf").write_text("[global]\ncert = /etc/healwatch-test-ca.crt\n")
        partial = BASE_TARBALL.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."],
                       check=True, timeout=300)
        partial.rename(BASE_TARBALL)


def base_image() -> str:
    """The base image's name, debootstrapping (once, cached) and importing it when missing."""
    with _cache_lock():
        if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
            return BASE_IMAGE
        if not BASE_TARBALL.exists():
            _make_base_tarball()
        changes = [arg for env in BASE_ENV for arg in ("--change", f"ENV {env}")]
        podman("import", *changes, "--change", 'CMD ["/bin/bash"]', str(BASE_TARBALL), BASE_IMAGE, timeout_s=300)
    return BASE_IMAGE


def build_image() -> tuple[str, float]:
    """Build the repository's Dockerfile on the local base; return the image name and seconds taken."""
    base = base_image()
    with _cache_lock():
        _remove_build_leftovers()
        started = time.monotonic()
        # --format docker keeps HEALTHCHECK, as docker build does (the OCI image format has no such field).
        podman("build", "--format", "docker", "--network", "host", "--build-arg", f"PYTHON_IMAGE={base}",
               "--layers", "-t", IMAGE, "-f", str(ROOT / "Dockerfile"), str(ROOT), timeout_s=900)
        elapsed_s = time.monotonic() - started
        # Each build after a code change leaves the last image and build stage untagged: drop them, so the
        # disk does not fill run after run. Best effort: an image still in use is simply kept for next time.
        podman("image", "prune", "--force", timeout_s=120, check=False)
    return IMAGE, elapsed_s


def _remove_build_leftovers() -> None:
    """Drop the working containers an interrupted build left (podman lists them as external, in "Storage")."""
    listed = podman("ps", "--all", "--external", "--format", "{{.ID}} {{.Status}}", check=False).stdout
    for line in listed.splitlines():
        container, _, status = line.partition(" ")
        if status.strip() == "Storage":
            podman("rm", "--force", container, check=False)


def image_size_bytes(image: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


def remove_container(name: str) -> None:
    """Remove a container of the tests' own, whatever state it is in, with its anonymous volumes."""
    podman("rm", "--force", "--volumes", "--time", "0", name, check=False)
