"""envbuild lock, --require-lock and fetch, on local sources reached over their real network paths.

Git repositories are served over git's dumb HTTP protocol and tarballs over
HTTP, both from 127.0.0.1 (HttpRecipe); runs of the script use the git
redirect of LocalRecipe. No Docker engine is asked: DOCKER_HOST points nowhere,
so base images stay unresolved, as they do where no registry answers.
"""

from __future__ import annotations

import hashlib
import http.server
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from envbuild.spec import lock as lockfile
from envbuild.spec.loader import Library
from envbuild.spec.sources import offline_git_name
from envbuild.pipeline import load_plan
from envbuild.shell import quote
from localsources import make_tarball, make_wheel, sha256
from testrecipe import HttpRecipe, LocalRecipe

NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
REPO_ROOT = Path(__file__).resolve().parent.parent

EXTRA = {
    "tip": """name: tip
description: libhello's main branch, pinned only by the lock.
source:
  git: {git_base}libhello.git
  branch: main
prefix:
  TIP_HOME: {install_root}/opt/tip
build: |
  mkdir -p "$TIP_HOME"
  cp VERSION "$TIP_HOME/VERSION"
check: |
  test -f "$TIP_HOME/VERSION"
""",
    "blob": """name: blob
description: A tarball whose sha256 the recipe does not know.
source:
  url: {server}/blob-1.0.tar.gz
  sha256: unknown
prefix:
  BLOB_HOME: {install_root}/opt/blob
build: |
  mkdir -p "$BLOB_HOME"
  tar -xzf "$EB_DOWNLOAD" --strip-components=1 -C "$BLOB_HOME"
""",
}
UNREACHABLE = {
    "gone": """name: gone
description: A download that is not there.
source:
  url: {server}/gone-1.0.tar.gz
  sha256: unknown
""",
    "far": """name: far
description: A pinned repository nobody answers for.
source:
  git: http://127.0.0.1:9/far.git
  commit: 0123456789abcdef0123456789abcdef01234567
""",
}
FAR_COMMIT = "0123456789abcdef0123456789abcdef01234567"
# What messages tell to run to write the lock, for envbuild() below (run from the recipe's root).
LOCK_COMMAND = "envbuild lock --recipe testrecipe --recipes-dir recipes"


def make_recipe(cls, root: Path, server, extra: dict[str, str], **kwargs) -> LocalRecipe:
    blob = make_tarball({"README": "blob\n"}, "blob-1.0")
    (server.root / "blob-1.0.tar.gz").write_bytes(blob)
    recipe = cls(root, server, extra_components=extra,
                 components=["libhello", "greet", "dataset", "rank0-tool", *extra], **kwargs)
    recipe.blob_sha256 = sha256(blob)
    return recipe


def envbuild(recipe: LocalRecipe, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(recipe.env(), **NO_DOCKER)
    return subprocess.run([sys.executable, "-m", "envbuild", *args, "--recipes-dir", str(recipe.recipes)],
                          env=env, capture_output=True, text=True, cwd=cwd or recipe.root)


def lock_of(recipe: LocalRecipe) -> dict:
    return yaml.safe_load((recipe.recipes / "testrecipe.lock").read_text())


@pytest.fixture
def http_recipe(tmp_path, file_server):
    return make_recipe(HttpRecipe, tmp_path / "h", file_server, {**EXTRA, **UNREACHABLE})


@pytest.fixture
def local_recipe(tmp_path, file_server):
    return make_recipe(LocalRecipe, tmp_path / "l", file_server, EXTRA)


# --- envbuild lock ---------------------------------------------------------------------


def test_lock_resolves_commits_branches_and_checksums_over_http(http_recipe):
    result = envbuild(http_recipe, "lock", "--recipe", "testrecipe")
    assert result.returncode == 0, result.stderr
    text = (http_recipe.recipes / "testrecipe.lock").read_text()
    assert text.startswith("# envbuild lock file of recipe testrecipe")
    doc = yaml.safe_load(text)
    assert lockfile.dump(doc) == text  # sorted keys, canonical form
    assert doc["lock_hash"] == lockfile.content_hash(doc)
    sources = {name: entry["source"] for name, entry in doc["components"].items()}
    assert sorted(sources) == ["blob", "dataset", "far", "gone", "greet", "libhello", "rank0-tool", "tip"]

    # A pinned commit over dumb HTTP: no fetch by commit there, so found by a full fetch.
    libhello = sources["libhello"]
    assert (libhello["commit"], libhello["resolved"], libhello["verified"], libhello["status"]) == \
        (http_recipe.libhello_commit, http_recipe.libhello_commit, True, "verified")
    assert "found among its branches and tags" in libhello["reason"]
    # A branch: resolved with git ls-remote.
    tip = sources["tip"]
    assert (tip["commit"], tip["branch"], tip["resolved"], tip["status"]) == (None, "main", http_recipe.libhello_commit, "verified")
    # Downloads: measured; equal to the recipe's sha256 when it has one.
    dataset_size = (http_recipe.server.root / "dataset-1.0.tar.gz").stat().st_size
    assert (sources["dataset"]["sha256"], sources["dataset"]["size"], sources["dataset"]["verified"]) == \
        (http_recipe.dataset_sha256, dataset_size, True)
    assert (sources["blob"]["sha256"], sources["blob"]["status"]) == (http_recipe.blob_sha256, "verified")
    # Unreachable: said so, nothing invented.
    assert sources["gone"] == {"kind": "tarball", "url": f"{http_recipe.server.url}/gone-1.0.tar.gz", "sha256": None,
                               "size": None, "status": "unresolved", "verified": False,
                               "reason": "download failed: HTTP 404 File not found"}
    far = sources["far"]
    assert (far["resolved"], far["status"], far["verified"]) == (FAR_COMMIT, "unverified", False)
    assert far["reason"].startswith("pinned in the recipe; cannot fetch from http://127.0.0.1:9/far.git: ")
    assert sources["rank0-tool"] is None
    assert doc["base_image"]["digest"] is None and doc["base_image"]["status"] == "unresolved"
    assert "no Docker engine answers on DOCKER_HOST=unix:///nonexistent/docker.sock" in doc["base_image"]["reason"]
    for warning in ("component gone source: unresolved: download failed: HTTP 404",
                    "component far source: unverified: pinned in the recipe",
                    "base image envbuild-test/base:latest: unresolved"):
        assert f"envbuild: warning: recipes/testrecipe.lock: {warning}" in result.stderr
    assert result.stdout == "recipes/testrecipe.lock: written\n"

    again = envbuild(http_recipe, "lock", "--recipe", "testrecipe")
    assert (again.returncode, again.stdout) == (0, "recipes/testrecipe.lock: up to date\n")
    assert (http_recipe.recipes / "testrecipe.lock").read_text() == text


def test_lock_over_file_urls_fetches_the_pinned_commit_alone(local_recipe):
    result = envbuild(local_recipe, "lock", "--recipe", "testrecipe")
    assert result.returncode == 0, result.stderr
    libhello = lock_of(local_recipe)["components"]["libhello"]["source"]
    assert libhello["reason"] == f"commit fetched by its commit in {local_recipe.values()['git_base']}libhello.git"


def test_lock_refuses_a_commit_the_repository_lacks_and_a_wrong_checksum(http_recipe):
    http_recipe.libhello_commit = "ab" * 20
    http_recipe.dataset_sha256 = "cd" * 32
    http_recipe.write()
    result = envbuild(http_recipe, "lock", "--recipe", "testrecipe")
    assert result.returncode == 1
    url = f"{http_recipe.server.url}/git/libhello.git"
    assert f"envbuild: error: component libhello: source.commit {'ab' * 20} is not in {url}" in result.stderr
    assert (f"envbuild: error: component dataset: sha256 mismatch for {http_recipe.server.url}/dataset-1.0.tar.gz: "
            f"the recipe expects {'cd' * 32}, the download has {sha256((http_recipe.server.root / 'dataset-1.0.tar.gz').read_bytes())}"
            in result.stderr)
    assert not (http_recipe.recipes / "testrecipe.lock").exists()


PATCHES_YAML = """patches:
  - name: greet-fix
    file: greet-fix.patch
    dist: greet
    specifier: "==1.0"
    description: A fix to greet.
"""
PATCH = """--- a/greet/__init__.py
+++ b/greet/__init__.py
@@ -1 +1 @@
-WORD = "greetings"
+WORD = "{word}"
"""


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def _add_patches(recipe: LocalRecipe, word: str = "hello") -> None:
    patches = recipe.recipes / "patches" / "greet-1.0"
    patches.mkdir(parents=True, exist_ok=True)
    (patches / "patches.yaml").write_text(PATCHES_YAML)
    (patches / "greet-fix.patch").write_text(PATCH.format(word=word))


# Each edit of the recipe after locking, and the line --check must print for it.
DISAGREEMENTS = {
    "component added": (
        lambda r: _edit(r.recipes / "testrecipe.yaml", "  - libhello\n", "  - libhello\n  - extra\n")
        or (r.recipes / "components" / "extra.yaml").write_text("name: extra\ndescription: New.\n"),
        "component extra: in the recipe, not in the lock"),
    "component removed": (
        lambda r: _edit(r.recipes / "testrecipe.yaml", "  - rank0-tool\n", ""),
        "component rank0-tool: in the lock, not in the recipe"),
    "url changed": (
        lambda r: _edit(r.recipes / "components" / "dataset.yaml", "dataset-1.0.tar.gz", "dataset-1.1.tar.gz"),
        "component dataset: source.url: the recipe has {server}/dataset-1.1.tar.gz, the lock has {server}/dataset-1.0.tar.gz"),
    "commit changed": (
        lambda r: _edit(r.recipes / "components" / "libhello.yaml", r.libhello_commit, "ef" * 20),
        "component libhello: source.commit: the recipe has " + "ef" * 20 + ", the lock has {libhello_commit}"),
    "branch given a commit": (
        lambda r: _edit(r.recipes / "components" / "tip.yaml", "  branch: main\n", "  branch: main\n  commit: " + "ab12" * 10 + "\n"),
        "component tip: source.commit: the recipe has " + "ab12" * 10 + ", the lock has none"),
    "checksum differs": (
        lambda r: _edit(r.recipes / "components" / "blob.yaml", "sha256: unknown", "sha256: " + "ab" * 32),
        "component blob: source.sha256: the recipe has " + "ab" * 32 + ", the lock has {blob_sha256}"),
    "source kind changed": (
        lambda r: _edit(r.recipes / "components" / "blob.yaml", "  url: ", "  deb: ")
        or _edit(r.recipes / "components" / "blob.yaml", "sha256: unknown\n", "sha256: unknown\n  package: blob\n  version: '1.0'\n"),
        "component blob: source: the recipe has a deb source, the lock has a tarball source"),
    "patch text changed": (
        lambda r: _add_patches(r, "bonjour"),
        "component greet: patches.greet-fix: the recipe's text has sha256 {new_patch}, the lock has {old_patch}"),
    "base image changed": (
        lambda r: _edit(r.recipes / "testrecipe.yaml", "base_image: envbuild-test/base:latest", "base_image: debian:bookworm"),
        "base_image: the recipe has debian:bookworm, the lock has envbuild-test/base:latest"),
    "lock edited by hand": (
        lambda r: _edit(r.recipes / "testrecipe.lock", r.blob_sha256, "1" * 64),
        "lock_hash: does not match the lock's content (was it edited by hand?)"),
}


@pytest.mark.parametrize("case", sorted(DISAGREEMENTS))
def test_check_names_each_kind_of_disagreement(local_recipe, case):
    _add_patches(local_recipe)
    _edit(local_recipe.recipes / "components" / "greet.yaml", "depends:", "patches:\n  - greet-fix\ndepends:")
    assert envbuild(local_recipe, "lock", "--recipe", "testrecipe").returncode == 0
    ok = envbuild(local_recipe, "lock", "--recipe", "testrecipe", "--check")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "recipes/testrecipe.lock: agrees with recipe testrecipe (6 components)\n"

    edit, expected = DISAGREEMENTS[case]
    edit(local_recipe)
    result = envbuild(local_recipe, "lock", "--recipe", "testrecipe", "--check")
    patch_text = (local_recipe.recipes / "patches" / "greet-1.0" / "greet-fix.patch").read_bytes()
    line = expected.format(server=local_recipe.server.url, libhello_commit=local_recipe.libhello_commit,
                           blob_sha256=local_recipe.blob_sha256, new_patch=hashlib.sha256(patch_text).hexdigest(),
                           old_patch=hashlib.sha256(PATCH.format(word="hello").encode()).hexdigest())
    assert result.returncode == 3, result.stderr
    assert f"envbuild: error: recipes/testrecipe.lock: {line}\n" in result.stderr
    assert result.stderr.endswith("envbuild: error: recipes/testrecipe.lock is out of date: "
                                  f"`{LOCK_COMMAND}` writes it again\n")
    assert "Traceback" not in result.stderr


def test_check_without_a_lock_fails(local_recipe):
    result = envbuild(local_recipe, "lock", "--recipe", "testrecipe", "--check")
    assert result.returncode == 3
    assert result.stderr == f"envbuild: error: recipes/testrecipe.lock does not exist; write it with `{LOCK_COMMAND}`\n"


def as_printed(command: str) -> list[str]:
    """The command a message says to run, split as a shell splits it, with `envbuild` this tree's."""
    words = shlex.split(command)
    assert words[0] == "envbuild", command
    return [sys.executable, "-m", "envbuild", *words[1:]]


def hints(stderr: str) -> list[str]:
    """The commands between backquotes in what envbuild printed."""
    return re.findall(r"`(envbuild [^`]*)`", stderr)


def test_every_lock_hint_names_the_recipes_dir_and_works_as_printed(local_recipe):
    """Missing, malformed and stale locks, and sources no lock pins: each message says to run the same
    command, with the (not default) recipes directory, which does what the message says."""
    env, cwd = dict(local_recipe.env(), **NO_DOCKER), local_recipe.root

    def run(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(as_printed(command), env=env, cwd=cwd, capture_output=True, text=True)

    unlocked = envbuild(local_recipe, "plan", "--recipe", "testrecipe")
    assert unlocked.returncode == 0, unlocked.stderr
    assert hints(unlocked.stderr) == [LOCK_COMMAND, LOCK_COMMAND]  # tip unpinned, blob unverified
    assert f"envbuild: warning: recipes/components/tip.yaml: source.commit: tip is unpinned (branch main, no lock); " \
        f"`{LOCK_COMMAND}` resolves it\n" in unlocked.stderr
    missing = envbuild(local_recipe, "plan", "--recipe", "testrecipe", "--require-lock")
    assert (missing.returncode, missing.stdout, missing.stderr) == (1, "", (
        "envbuild: error: recipe testrecipe has no lock (recipes/testrecipe.lock) and --require-lock was given; "
        f"write it with `{LOCK_COMMAND}`\n"))
    assert run(LOCK_COMMAND).returncode == 0
    assert run(LOCK_COMMAND + " --check").stdout == "recipes/testrecipe.lock: agrees with recipe testrecipe (6 components)\n"

    DISAGREEMENTS["component removed"][0](local_recipe)
    stale = envbuild(local_recipe, "lock", "--recipe", "testrecipe", "--check")
    assert (stale.returncode, stale.stderr) == (3, (
        "envbuild: error: recipes/testrecipe.lock: component rank0-tool: in the lock, not in the recipe\n"
        f"envbuild: error: recipes/testrecipe.lock is out of date: `{LOCK_COMMAND}` writes it again\n"))
    assert run(LOCK_COMMAND).returncode == 0
    assert run(LOCK_COMMAND + " --check").stdout == "recipes/testrecipe.lock: agrees with recipe testrecipe (5 components)\n"

    (local_recipe.recipes / "testrecipe.lock").write_text("format: something else\n")
    malformed = envbuild(local_recipe, "runtime-script", "--recipe", "testrecipe")
    assert (malformed.returncode, malformed.stderr) == (1, (
        "envbuild: error: recipes/testrecipe.lock: not an envbuild lock file (format envbuild-lock-v1 expected); "
        f"write it again with `{LOCK_COMMAND}`\n"))
    assert run(LOCK_COMMAND).returncode == 0
    assert envbuild(local_recipe, "runtime-script", "--recipe", "testrecipe", "--require-lock").returncode == 0


def test_lock_hints_name_the_recipe_as_given_and_not_the_default_recipes_dir(local_recipe):
    """A recipe file is named as given (its directory is its recipes directory); the default recipes
    directory is not named, nor a NIC family (or cluster profile), which changes no source of the lock."""
    env = dict(local_recipe.env(), **NO_DOCKER)
    by_file = subprocess.run([sys.executable, "-m", "envbuild", "plan", "--recipe", "recipes/testrecipe.yaml",
                              "--nic-family", "ionic", "--require-lock"],
                             env=env, cwd=local_recipe.root, capture_output=True, text=True)
    assert hints(by_file.stderr) == ["envbuild lock --recipe recipes/testrecipe.yaml"]
    assert subprocess.run(as_printed(hints(by_file.stderr)[0]), env=env, cwd=local_recipe.root).returncode == 0
    assert (local_recipe.recipes / "testrecipe.lock").is_file()
    (local_recipe.recipes / "testrecipe.lock").unlink()
    for given in (["--recipes-dir", "recipes"], []):  # the default directory (ENVBUILD_RECIPES), given or not
        default = subprocess.run([sys.executable, "-m", "envbuild", "lock", "--recipe", "testrecipe", "--check", *given],
                                 env=dict(env, ENVBUILD_RECIPES=str(local_recipe.recipes)), cwd=local_recipe.root,
                                 capture_output=True, text=True)
        assert (default.returncode, default.stderr) == (3, (
            "envbuild: error: recipes/testrecipe.lock does not exist; "
            "write it with `envbuild lock --recipe testrecipe`\n"))


def test_the_lock_header_names_no_path(local_recipe):
    """The lock is compared byte for byte (`lock` says `up to date`) and committed: it must not depend on where
    it was written, so its header names the recipes directory as DIR."""
    assert envbuild(local_recipe, "lock", "--recipe", "testrecipe").returncode == 0
    text = (local_recipe.recipes / "testrecipe.lock").read_text()
    assert text.startswith(
        "# envbuild lock file of recipe testrecipe: the exact sources it installs.\n"
        "# Written by `envbuild lock --recipe testrecipe --recipes-dir DIR`, DIR being the directory of\n"
        "# this file (the default recipes directory needs no --recipes-dir); with --check, the same\n"
        "# command compares it with the recipe. Commit it next to the recipe; do not edit it by hand.\n")
    assert str(local_recipe.root) not in "".join(line for line in text.splitlines(True) if line.startswith("#"))


# --- using the lock ----------------------------------------------------------------------


def test_lock_fills_an_unknown_sha256_which_the_script_then_verifies(local_recipe):
    blob_url = f"{local_recipe.server.url}/blob-1.0.tar.gz"
    unlocked = local_recipe.render(local_recipe.root / "unlocked.sh").read_text()
    assert f"_eb_download {quote(blob_url)} unknown blob-1.0.tar.gz" in unlocked

    assert envbuild(local_recipe, "lock", "--recipe", "testrecipe").returncode == 0
    script = local_recipe.render()
    assert f"_eb_download {quote(blob_url)} {local_recipe.blob_sha256} blob-1.0.tar.gz" in script.read_text()
    result = local_recipe.run(script, "--only", "blob")
    assert result.returncode == 0, result.stderr
    assert (local_recipe.root / "opt/blob/README").read_text() == "blob\n"

    (local_recipe.server.root / "blob-1.0.tar.gz").write_bytes(make_tarball({"README": "evil\n"}, "blob-1.0"))
    tampered = sha256((local_recipe.server.root / "blob-1.0.tar.gz").read_bytes())
    result = local_recipe.run(script, "--force", "blob", "--only", "blob")
    assert result.returncode == 1
    assert f"sha256 mismatch for {blob_url}: expected {local_recipe.blob_sha256}, got {tampered}" in result.stderr
    assert (local_recipe.root / "opt/blob/README").read_text() == "blob\n"


def test_branch_only_source_is_unpinned_until_locked_then_held_at_the_locked_commit(local_recipe):
    library = Library(local_recipe.recipes)
    plan = load_plan(library.root, "testrecipe")
    tip_url = f"{local_recipe.values()['git_base']}libhello.git"
    assert plan.step("tip").component.source.pin == f"{tip_url}#branch=main"
    assert f"{library.root}/components/tip.yaml: source.commit: tip is unpinned (branch main, no lock); " \
        f"`envbuild lock --recipe testrecipe --recipes-dir {library.root}` resolves it" in plan.warnings()
    name = offline_git_name(tip_url)
    unpinned = local_recipe.render(local_recipe.root / "u.sh")
    assert f"_eb_git {quote(tip_url)} '' 0 {name} main\n" in unpinned.read_text()
    installed = local_recipe.run(unpinned, "--only", "tip")
    assert installed.returncode == 0, installed.stderr
    assert "is not pinned: installing the tip of branch main (envbuild lock pins it)" in \
        (local_recipe.state / "logs" / "tip.log").read_text()
    assert (local_recipe.root / "opt/tip/VERSION").read_text() == "1\n"

    assert envbuild(local_recipe, "lock", "--recipe", "testrecipe").returncode == 0
    locked = local_recipe.libhello_commit
    local_recipe.set_hello_version(2)  # the branch moves on; the lock holds
    library = Library(local_recipe.recipes)
    plan = load_plan(library.root, "testrecipe")
    assert plan.step("tip").component.source.pin == f"{tip_url}@{locked}"
    assert not [w for w in plan.warnings() if "tip" in w]
    script = local_recipe.render()
    assert f"_eb_git {quote(tip_url)} {locked} 0 {name}\n" in script.read_text()
    result = local_recipe.run(script, "--only", "tip")
    assert result.returncode == 0, result.stderr
    assert "tip: installing" in result.stdout  # the locked commit is another build than the unpinned tip
    assert (local_recipe.root / "opt/tip/VERSION").read_text() == "1\n"

    # The lock still agrees (the recipe names the branch, not a commit); locking again moves it.
    assert envbuild(local_recipe, "lock", "--recipe", "testrecipe", "--check").returncode == 0
    assert envbuild(local_recipe, "lock", "--recipe", "testrecipe").returncode == 0
    assert lock_of(local_recipe)["components"]["tip"]["source"]["resolved"] == local_recipe.libhello_commit != locked


@pytest.mark.parametrize("command", [
    ["plan"], ["runtime-script"], ["dockerfile", "--nic-family", "none"], ["image", "--dry-run", "--nic-family", "none"],
])
def test_require_lock_refuses_a_missing_or_stale_lock(local_recipe, command):
    args = [*command, "--recipe", "testrecipe", "--require-lock"]
    missing = envbuild(local_recipe, *args)
    assert missing.returncode == 1 and missing.stdout == ""
    assert ("envbuild: error: recipe testrecipe has no lock (recipes/testrecipe.lock) and --require-lock was given; "
            f"write it with `{LOCK_COMMAND}`") in missing.stderr

    assert envbuild(local_recipe, "lock", "--recipe", "testrecipe").returncode == 0
    fine = envbuild(local_recipe, *args)
    assert fine.returncode == 0, fine.stderr
    assert local_recipe.blob_sha256 in fine.stdout  # the locked value is used

    _edit(local_recipe.recipes / "components" / "libhello.yaml", local_recipe.libhello_commit, "ef" * 20)
    stale = envbuild(local_recipe, *args)
    assert stale.returncode == 1 and stale.stdout == ""
    assert f"envbuild: error: recipes/testrecipe.lock: component libhello: source.commit: the recipe has {'ef' * 20}" \
        in stale.stderr
    assert "envbuild: error: recipes/testrecipe.lock disagrees with the recipe and --require-lock was given" in stale.stderr
    # Without --require-lock a stale lock is a warning and the recipe's values win.
    loose = envbuild(local_recipe, *args[:-1])
    assert loose.returncode == 0
    assert "envbuild: warning: recipes/testrecipe.lock: component libhello: source.commit" in loose.stderr


def test_base_image_override_is_not_a_disagreement(local_recipe):
    assert envbuild(local_recipe, "lock", "--recipe", "testrecipe").returncode == 0
    result = envbuild(local_recipe, "dockerfile", "--recipe", "testrecipe", "--nic-family", "none",
                      "--base-image", "debian:bookworm", "--require-lock")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("FROM debian:bookworm AS envbuild-base\n") == 1


def test_locked_digest_pins_the_base_image(local_recipe):
    assert envbuild(local_recipe, "lock", "--recipe", "testrecipe").returncode == 0
    path = local_recipe.recipes / "testrecipe.lock"
    doc = yaml.safe_load(path.read_text())
    digest = "sha256:" + "a" * 64
    doc["base_image"].update(digest=digest, status="verified", reason="from the registry")
    path.write_text(lockfile.dump(doc))
    result = envbuild(local_recipe, "dockerfile", "--recipe", "testrecipe", "--nic-family", "none", "--require-lock")
    assert result.returncode == 0, result.stderr
    assert f"FROM envbuild-test/base:latest@{digest} AS envbuild-base\n" in result.stdout
    assert f'io.envbuild.lock-hash="{lockfile.content_hash(doc)}"' in result.stdout


def test_builtin_locks_agree_and_resolve_nothing_they_could_not_reach():
    library = Library()
    for name in library.recipe_names():
        plan = load_plan(library.root, name)
        lock = plan.lock
        assert lock is not None and plan.lock_problems == ()
        plan.require_lock()
        assert lock.path.read_text(encoding="utf-8") == lockfile.dump(lock.doc)  # the header as dump writes it
        assert lock.hash == lockfile.content_hash(lock.doc)
        for component, entry in lock.components.items():
            source = entry["source"]
            if source is None:
                continue
            if source["kind"] == "git":
                # Pinned in the recipe; github.com is not reachable from where the lock was written.
                assert source["resolved"] == source["commit"] == plan.step(component).component.source.commit
                assert source["status"] == "unverified" and source["reason"].startswith("pinned in the recipe; cannot fetch")
            else:
                assert source["sha256"] is None and source["size"] is None and source["status"] == "unresolved"
                assert source["reason"].startswith("download failed: ")
                assert plan.step(component).component.source.sha256 == "unknown"
        assert lock.doc["base_image"]["digest"] is None


# --- envbuild fetch --------------------------------------------------------------------


PIP_COMPONENT = """name: tinydep
description: A pip requirement, from a find-links page on 127.0.0.1.
pip:
  - requirements:
      - tinypkg==1.0
    options:
      - --no-index
      - --find-links={server}/wheels/
check: |
  "$EB_PYTHON" -c 'import tinypkg'
"""


def test_fetch_fills_the_offline_layout_and_keeps_what_is_verified(local_recipe):
    wheel_name, wheel = make_wheel("tinypkg", "1.0")
    (local_recipe.server.root / "wheels").mkdir()
    (local_recipe.server.root / "wheels" / wheel_name).write_bytes(wheel)
    (local_recipe.recipes / "components" / "tinydep.yaml").write_text(PIP_COMPONENT.format(server=local_recipe.server.url))
    _edit(local_recipe.recipes / "testrecipe.yaml", "  - libhello\n", "  - libhello\n  - tinydep\n")
    assert envbuild(local_recipe, "lock", "--recipe", "testrecipe").returncode == 0
    into = local_recipe.root / "sources"
    pip_args = []  # the component's own --no-index --find-links say where its packages are
    result = envbuild(local_recipe, "fetch", "--recipe", "testrecipe", "--into", str(into), *pip_args)
    assert result.returncode == 0, result.stderr

    git_base = local_recipe.values()["git_base"]
    mirrors = {f"{offline_git_name(git_base + name)}.git" for name in ("libhello.git", "greet.git")}
    assert {p.name for p in (into / "git").iterdir()} == mirrors | {"urls"}
    assert (into / "git" / "urls").read_text() == "".join(sorted(
        f"{offline_git_name(git_base + name)} {git_base + name}\n" for name in ("libhello.git", "greet.git")))
    for mirror in mirrors:
        assert subprocess.run(["git", "-C", str(into / "git" / mirror), "rev-parse", "--is-bare-repository"],
                              capture_output=True, text=True).stdout.strip() == "true"
    assert {p.name for p in (into / "downloads").iterdir()} == {"dataset-1.0.tar.gz", "blob-1.0.tar.gz"}
    assert sha256((into / "downloads" / "blob-1.0.tar.gz").read_bytes()) == local_recipe.blob_sha256
    # greet's build requirement (setuptools, its pyproject.toml says) comes from PyPI, for pip to build it offline.
    setuptools_wheel, tiny = sorted(p.name for p in (into / "pip").iterdir())
    assert tiny == wheel_name and re.fullmatch(r"setuptools-[0-9.]+-py3-none-any\.whl", setuptools_wheel)

    manifest = json.loads((into / "MANIFEST.json").read_text())
    assert manifest["recipe"] == "testrecipe" and manifest["missing"] == []
    assert manifest["lock_hash"] == lock_of(local_recipe)["lock_hash"]
    assert {(g["component"], g["commit"]) for g in manifest["git"]} == {
        ("libhello", local_recipe.libhello_commit), ("greet", local_recipe.greet_commit), ("tip", local_recipe.libhello_commit)}
    assert {(d["file"], d["sha256"], d["verified"]) for d in manifest["downloads"]} == {
        ("downloads/dataset-1.0.tar.gz", local_recipe.dataset_sha256, True),
        ("downloads/blob-1.0.tar.gz", local_recipe.blob_sha256, True)}
    assert manifest["pip"][1] == {"file": f"pip/{wheel_name}", "sha256": sha256(wheel), "size": len(wheel)}
    assert manifest["build_requirements"] == [
        {"of": "greet", "backend": "setuptools.build_meta", "requires": ["setuptools"], "dynamic": [], "note": None}]
    assert manifest["meson"] == [] and manifest["apt"] == [] and manifest["apt_base_image"] is None

    # Again: everything verified is kept, nothing downloaded; a damaged file is fetched again.
    (into / "downloads" / "dataset-1.0.tar.gz").write_bytes(b"damaged")
    requests_before = len(local_recipe.server.requests)
    again = envbuild(local_recipe, "fetch", "--recipe", "testrecipe", "--into", str(into), *pip_args)
    assert again.returncode == 0, again.stderr
    assert "libhello: git/" in again.stderr and f"holds {local_recipe.libhello_commit[:12]}; kept" in again.stderr
    assert "blob: downloads/blob-1.0.tar.gz is there, sha256 verified; kept" in again.stderr
    assert "dataset: downloads/dataset-1.0.tar.gz has sha256 " in again.stderr
    fetched = [path for path in local_recipe.server.requests[requests_before:] if not path.startswith("/wheels")]
    assert fetched == ["/dataset-1.0.tar.gz"]
    assert sha256((into / "downloads" / "dataset-1.0.tar.gz").read_bytes()) == local_recipe.dataset_sha256


def test_fetch_reports_what_it_cannot_get_and_refuses_a_wrong_checksum(http_recipe):
    (http_recipe.server.root / "dataset-1.0.tar.gz").write_bytes(b"not the dataset")
    into = http_recipe.root / "sources"
    result = envbuild(http_recipe, "fetch", "--recipe", "testrecipe", "--into", str(into))
    assert result.returncode == 1
    assert "envbuild: error: some sources could not be fetched:" in result.stderr
    assert (f"envbuild: error: dataset: sha256 mismatch for {http_recipe.server.url}/dataset-1.0.tar.gz: "
            f"expected {http_recipe.dataset_sha256}, got {sha256(b'not the dataset')}") in result.stderr
    assert "envbuild: error: gone: download failed: HTTP 404 File not found" in result.stderr
    assert "envbuild: error: far: cannot mirror http://127.0.0.1:9/far.git: " in result.stderr
    assert not (into / "downloads" / "dataset-1.0.tar.gz").exists()
    assert not list((into / "downloads").glob("*.part"))
    manifest = json.loads((into / "MANIFEST.json").read_text())
    assert len(manifest["missing"]) == 3
    assert {g["component"] for g in manifest["git"]} == {"libhello", "greet", "tip"}  # over dumb HTTP too


def test_fetched_directory_installs_the_recipe_without_network(local_recipe):
    """The layout fetch writes is the one the runtime script reads (ENVBUILD_SOURCE_DIR)."""
    assert envbuild(local_recipe, "lock", "--recipe", "testrecipe").returncode == 0
    into = local_recipe.root / "sources"
    assert envbuild(local_recipe, "fetch", "--recipe", "testrecipe", "--into", str(into)).returncode == 0
    script = local_recipe.render()
    local_recipe.server.close()
    shutil.rmtree(local_recipe.repos)  # the git redirect now leads nowhere
    result = local_recipe.run(script, ENVBUILD_SOURCE_DIR=str(into))
    assert result.returncode == 0, result.stderr + result.stdout
    assert (local_recipe.root / "opt/blob/README").read_text() == "blob\n"
    assert (local_recipe.root / "opt/tip/VERSION").read_text() == "1\n"
    assert sorted(local_recipe.builds()) == ["dataset", "greet", "libhello", "rank0-tool"]


def test_offline_git_name():
    url = "https://github.com/ROCm/ucx.git"
    assert offline_git_name(url) == "ucx-" + hashlib.sha256(url.encode()).hexdigest()[:12]
    assert offline_git_name("https://example.com/a/mori/") == "mori-" + hashlib.sha256(b"https://example.com/a/mori/").hexdigest()[:12]
    assert offline_git_name("https://a.example/x/ucx.git") != offline_git_name(url)


# --- determinism ------------------------------------------------------------------------

ENVIRONMENTS = [
    {"LC_ALL": "C", "PYTHONHASHSEED": "1", "umask": "022"},
    {"LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "4242", "umask": "077", "TZ": "Asia/Kolkata"},
]
RENDERINGS = [
    (recipe, ["runtime-script", "--recipe", recipe]) for recipe in Library().recipe_names()
] + [
    (recipe, ["dockerfile", "--recipe", recipe, "--cluster", cluster])
    for recipe, cluster in itertools.product(Library().recipe_names(), Library().cluster_names())
]


@pytest.mark.parametrize("recipe,args", RENDERINGS, ids=[" ".join(args[:1] + args[2:]) for _, args in RENDERINGS])
def test_rendering_is_byte_identical_in_different_environments(tmp_path, recipe, args):
    outputs = []
    for index, settings in enumerate(ENVIRONMENTS):
        cwd = tmp_path / f"cwd{index}" / "deeper"
        cwd.mkdir(parents=True)
        env = {key: value for key, value in os.environ.items() if key not in ("LC_ALL", "LANG", "TZ")}
        env.update({key: value for key, value in settings.items() if key != "umask"})
        result = subprocess.run(["bash", "-c", f"umask {settings['umask']}; exec \"$@\"", "_", sys.executable, "-m",
                                 "envbuild", *args], env=env, cwd=cwd, capture_output=True, check=True)
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0]


# --- base image digests ------------------------------------------------------------------


class Registry:
    """A one-image registry (API v2) on 127.0.0.1, which the engine trusts over plain HTTP."""

    def __init__(self):
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                             "config": {}}).encode()
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                       "digest": config_digest},
            "layers": [],
        }).encode()
        self.digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        blobs = {"/v2/": (b"{}", "application/json", None),
                 "/v2/test/base/manifests/1": (manifest, "application/vnd.docker.distribution.manifest.v2+json", self.digest),
                 f"/v2/test/base/manifests/{self.digest}": (manifest, "application/vnd.docker.distribution.manifest.v2+json", self.digest),
                 f"/v2/test/base/blobs/{config_digest}": (config, "application/octet-stream", config_digest)}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self, head=False):
                if self.path not in blobs:
                    self.send_response(404)
                    self.end_headers()
                    return
                body, kind, digest = blobs[self.path]
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                if digest:
                    self.send_header("Docker-Content-Digest", digest)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_HEAD(self):
                self.do_GET(head=True)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.ref = f"127.0.0.1:{self.httpd.server_address[1]}/test/base:1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.docker
def test_lock_records_the_registry_digest_of_the_base_image(local_recipe):
    from docker_base import engine_or_skip

    engine_or_skip()
    registry = Registry()
    try:
        _edit(local_recipe.recipes / "testrecipe.yaml", "base_image: envbuild-test/base:latest", f"base_image: {registry.ref}")
        env = local_recipe.env()
        result = subprocess.run([sys.executable, "-m", "envbuild", "lock", "--recipe", "testrecipe",
                                 "--recipes-dir", str(local_recipe.recipes)], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        base = lock_of(local_recipe)["base_image"]
        assert base == {"ref": registry.ref, "digest": registry.digest, "status": "verified",
                        "reason": f"from the registry of {registry.ref}"}
        dockerfile = subprocess.run([sys.executable, "-m", "envbuild", "dockerfile", "--recipe", "testrecipe",
                                     "--nic-family", "none", "--require-lock", "--recipes-dir", str(local_recipe.recipes)],
                                    env=env, capture_output=True, text=True)
        assert f"FROM {registry.ref}@{registry.digest} AS envbuild-base\n" in dockerfile.stdout
    finally:
        registry.close()


@pytest.mark.docker
def test_image_digest_says_why_there_is_none():
    from docker_base import engine_or_skip, ensure_base_image

    from envbuild.run.docker_engine import image_digest

    engine = engine_or_skip()
    base = ensure_base_image(engine)  # built here, never pulled: no registry digest
    digest, reason = image_digest(engine, base)
    assert digest is None
    assert reason.startswith(f"no registry answers for {base} (") and "the local image has no registry digest" in reason
    digest, reason = image_digest(engine, "127.0.0.1:9/nothing/here:1")
    assert digest is None and "the local engine does not have it" in reason
    assert image_digest(engine, "debian@sha256:" + "a" * 64) == ("sha256:" + "a" * 64, "the reference is a digest")
