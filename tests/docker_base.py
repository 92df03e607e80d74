"""Support for tests against a real Docker engine.

No registry is reachable, so the base image is made here: a debootstrap
minbase rootfs imported into the engine, plus a Dockerfile layer with the
tools recipes need. Both are tagged by a hash of what makes them, so later
test runs (and concurrent ones, thanks to a file lock) reuse them.

    client = engine_or_skip()                # starts dockerd if needed
    base = ensure_base_image(client)         # envbuild-test/base:<hash>
    session = ImageSession()                 # throwaway tags for one test session
    ...
    session.cleanup(client)                  # never touches the cached base
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import docker.errors
import pytest

from envbuild.run.docker_engine import (
    BuildProgress,
    BuildTranscript,
    build,
    connect,
    image_exists,
    make_context_tar,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
ENSURE_DOCKER = REPO_ROOT / "scripts" / "ensure-docker"
ENSURE_REGISTRY = REPO_ROOT / "scripts" / "ensure-registry"

DEBOOTSTRAP_SUITE = "bookworm"
DEBOOTSTRAP_VARIANT = "minbase"
# Bump to force a new rootfs when how it is made changes in a way the hash misses.
ROOTFS_FORMAT = "envbuild-test-rootfs-v1"
ROOTFS_REPOSITORY = "envbuild-test/rootfs"
BASE_REPOSITORY = "envbuild-test/base"
BASE_LABEL = "envbuild-test.base"
SESSION_LABEL = "envbuild-test.session"
BASE_PACKAGES = (
    "python3 python3-pip python3-venv git ca-certificates curl build-essential make"
)
BASE_DOCKERFILE = """\
FROM {rootfs}
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN ENVBUILD_COMPONENT=base-packages sh -c 'apt-get update \\
 && apt-get install -y --no-install-recommends {packages} \\
 && rm -rf /var/lib/apt/lists/*'
"""
IMPORT_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    'CMD ["/bin/bash"]',
]
LOCK_PATH = Path(tempfile.gettempdir()) / "envbuild-test-base.lock"


# --- engine -------------------------------------------------------------------


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _ensure_or_skip(script: Path, what: str) -> str:
    """Runs scripts/ensure-<what>; its stdout. Outside CI a machine that cannot
    have it skips the test; in CI (CI=true) that is a failure, since it would
    hide a broken setup."""
    result = subprocess.run([str(script)], capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        reason = f"no {what}: scripts/{script.name} failed:\n{result.stderr.strip()}"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return result.stdout.strip()


def engine_or_skip():
    """A connected docker client, after scripts/ensure-docker made an engine answer."""
    _ensure_or_skip(ENSURE_DOCKER, "Docker engine")
    return connect()


def registry_or_skip() -> str:
    """The host:port of a registry on 127.0.0.1, after scripts/ensure-registry made one answer."""
    return _ensure_or_skip(ENSURE_REGISTRY, "registry")


# --- base image ---------------------------------------------------------------


def _short_hash(document: object) -> str:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rootfs_image_tag() -> str:
    # The mirror is left out on purpose: it says where packages come from, not
    # what they are, and machines with different mirrors should share the hash.
    architecture = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    document = {
        "format": ROOTFS_FORMAT,
        "suite": DEBOOTSTRAP_SUITE,
        "variant": DEBOOTSTRAP_VARIANT,
        "architecture": architecture,
        "import_changes": IMPORT_CHANGES,
    }
    return f"{ROOTFS_REPOSITORY}:{_short_hash(document)}"


def base_dockerfile(rootfs_tag: str) -> str:
    return BASE_DOCKERFILE.format(rootfs=rootfs_tag, packages=BASE_PACKAGES)


def base_image_tag() -> str:
    # The Dockerfile names the rootfs tag, so its text covers the debootstrap parameters too.
    return f"{BASE_REPOSITORY}:{_short_hash(base_dockerfile(rootfs_image_tag()))}"


def ensure_base_image(client) -> str:
    """The tag of the test base image, creating it on first use (a minute or two)."""
    tag = base_image_tag()
    if image_exists(client, tag):
        return tag
    with _creation_lock():
        if image_exists(client, tag):  # another test run made it while we waited
            return tag
        rootfs_tag = _ensure_rootfs_image(client)
        context = make_context_tar({"Dockerfile": (base_dockerfile(rootfs_tag).encode(), 0o644)})
        build(client, context, tag, labels={BASE_LABEL: "1"}, on_event=BuildProgress(stream=sys.stderr))
    return tag


@contextlib.contextmanager
def _creation_lock() -> Iterator[None]:
    with open(LOCK_PATH, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _ensure_rootfs_image(client) -> str:
    tag = rootfs_image_tag()
    if image_exists(client, tag):
        return tag
    _ensure_debootstrap()
    work_dir = Path(tempfile.mkdtemp(prefix="envbuild-rootfs-"))
    try:
        rootfs = work_dir / "rootfs"
        log_path = work_dir / "debootstrap.log"
        command = ["debootstrap", f"--variant={DEBOOTSTRAP_VARIANT}", DEBOOTSTRAP_SUITE, str(rootfs)]
        mirror = debian_mirror()
        if mirror:
            command.append(mirror)
        with open(log_path, "w") as log:
            result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"{' '.join(command)} failed (exit {result.returncode}):\n{tail}")
        tar_path = work_dir / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tar_path), "."], check=True
        )
        repository, image_tag = tag.split(":")
        client.api.import_image(src=str(tar_path), repository=repository, tag=image_tag, changes=IMPORT_CHANGES)
    finally:
        _remove_work_dir(work_dir)
    return tag


def _ensure_debootstrap() -> None:
    if shutil.which("debootstrap"):
        return
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=environment, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "debootstrap"],
        check=True,
        env=environment,
        stdout=subprocess.DEVNULL,
    )


def debian_mirror() -> str | None:
    """The machine's own apt mirror for the suite, or None to use debootstrap's default.

    ENVBUILD_TEST_DEBIAN_MIRROR overrides what /etc/apt says.
    """
    override = os.environ.get("ENVBUILD_TEST_DEBIAN_MIRROR")
    if override:
        return override
    for source in _apt_sources(Path("/etc/apt")):
        if "deb" in source["types"] and DEBOOTSTRAP_SUITE in source["suites"] and "main" in source["components"]:
            return source["uris"][0]
    return None


def _apt_sources(apt_dir: Path) -> Iterator[dict[str, list[str]]]:
    one_line_files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in one_line_files:
        if path.is_file():
            yield from _one_line_sources(path.read_text(errors="replace"))
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        yield from _deb822_sources(path.read_text(errors="replace"))


def _one_line_sources(text: str) -> Iterator[dict[str, list[str]]]:
    for raw_line in text.splitlines():
        line = raw_line.split("#", 1)[0].strip()
        if line.count("[") == 1 and "]" in line:  # drop "[arch=... signed-by=...]"
            before, _, after = line.partition("[")
            line = before + after.partition("]")[2]
        fields = line.split()
        if len(fields) >= 3:
            yield {"types": [fields[0]], "uris": [fields[1]], "suites": [fields[2]], "components": fields[3:]}


def _deb822_sources(text: str) -> Iterator[dict[str, list[str]]]:
    paragraphs: list[dict[str, str]] = [{}]
    last_key = None
    for raw_line in text.splitlines():
        if raw_line.startswith("#"):
            continue
        if not raw_line.strip():
            paragraphs.append({})
            continue
        if raw_line[0].isspace() and last_key:
            paragraphs[-1][last_key] += " " + raw_line.strip()
            continue
        key, _, value = raw_line.partition(":")
        last_key = key.strip().lower()
        paragraphs[-1][last_key] = value.strip()
    for fields in paragraphs:
        if "uris" in fields and fields.get("enabled", "yes").lower() != "no":
            yield {
                key: fields.get(key, "").split()
                for key in ("types", "uris", "suites", "components")
            }


def _remove_work_dir(work_dir: Path) -> None:
    # A debootstrap that died mid-way can leave /proc or /sys mounted inside
    # the rootfs; deleting through those mounts must never be attempted.
    prefix = str(work_dir) + "/"
    with open("/proc/mounts") as mounts:
        targets = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for target in sorted(targets, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)
    shutil.rmtree(work_dir, ignore_errors=True)


# --- per-session images -------------------------------------------------------


class ImageSession:
    """Throwaway names for what one test session builds, and their removal.

    Tags are `envbuild-test/s-<id>/<name>:latest`; build with `labels` so that
    containers started from the images carry the session label too, and pass
    every build's transcript to `track` so that layers of failed builds (which
    no tag reaches) are removed as well.
    """

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:10]
        self.tag_prefix = f"envbuild-test/s-{self.id}"
        self.labels = {SESSION_LABEL: self.id}
        self._layer_ids: list[str] = []

    def tag(self, name: str) -> str:
        return f"{self.tag_prefix}/{name}:latest"

    def track(self, transcript: BuildTranscript) -> None:
        self._layer_ids.extend(transcript.new_layer_ids)

    def adopt_new_images(self, client, before: set[str]) -> None:
        """Removes at cleanup the images an `envbuild image` subprocess made since `before` (image ids).

        Its stages and the untagged build result stay in the engine as the layer
        cache, out of reach of tags and labels. Only envbuild's images are taken
        (their history runs run-component.sh), so a concurrent suite's are left.
        """
        for image in client.images.list(all=True):
            if image.id in before:
                continue
            with contextlib.suppress(docker.errors.NotFound):  # removed meanwhile
                if any("run-component.sh" in entry["CreatedBy"] for entry in client.api.history(image.id)):
                    self._layer_ids.append(image.id)

    def cleanup(self, client) -> None:
        session_images = [
            image
            for image in client.images.list(all=True)
            if image.labels.get(SESSION_LABEL) == self.id
            or any(tag.startswith(self.tag_prefix + "/") for tag in image.tags)
        ]
        session_image_ids = {image.id for image in session_images}
        for container in client.containers.list(all=True):
            if container.labels.get(SESSION_LABEL) == self.id or container.attrs.get("Image") in session_image_ids:
                container.remove(force=True)
        for image in session_images:
            for tag in image.tags:
                _remove_image_quietly(client, tag)
            _remove_image_quietly(client, image.id)
        for layer_id in reversed(self._layer_ids):
            _remove_image_quietly(client, layer_id)


def _remove_image_quietly(client, reference: str) -> None:
    # Already gone with a removed child, or still a parent of someone else's image.
    with contextlib.suppress(Exception):
        client.api.remove_image(reference, noprune=False)
