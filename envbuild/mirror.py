"""Bare git mirrors in an offline source directory, and what a commit in them pins.

`envbuild fetch` keeps one mirror per URL at `git/<offline_git_name(url)>.git`:
the recipe's git sources, their submodules and the git repositories meson
wraps name. Each pinned commit also gets a ref of its own
(`refs/envbuild/<commit>`), so that a commit no branch holds any more stays in
the mirror and can be fetched by its id. `git/urls` maps each mirror to its
URL; the runtime script reads it to send every git URL (submodules and wraps
included) to its mirror (`url.<mirror>.insteadOf`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from envbuild.net import DownloadFailed, last_line, run_git

URLS_FILE = "git/urls"
PIN_REFS = "refs/envbuild/"
GITLINK_MODE = "160000"


@dataclass(frozen=True)
class Submodule:
    """A submodule as a commit pins it: its path in the superproject, its absolute URL and commit."""

    path: str
    url: str
    commit: str


def ensure(url: str, mirror: Path, commit: str = "", branch: str = "") -> tuple[str, str]:
    """Makes sure `mirror`, the bare mirror of `url`, holds `commit` (or, without one, the tip of `branch`).

    Returns (the commit, what was done: "kept", "updated" or "mirrored"); the
    commit is "" for a branch the mirror lacks. Raises DownloadFailed when the
    repository cannot be mirrored or lacks the commit.
    """
    if commit and mirror.is_dir() and has_commit(mirror, commit):
        _pin(mirror, commit)
        return commit, "kept"
    if mirror.is_dir():
        # No --prune: it would drop the refs/envbuild/ pins, which the origin does not have.
        result = run_git("remote", "update", cwd=mirror)
        action = "updated"
    else:
        partial = mirror.with_name(mirror.name + ".part")
        shutil.rmtree(partial, ignore_errors=True)
        mirror.parent.mkdir(parents=True, exist_ok=True)
        result = run_git("clone", "-q", "--mirror", url, str(partial))
        if result.returncode == 0:
            partial.rename(mirror)
        else:
            shutil.rmtree(partial, ignore_errors=True)
        action = "mirrored"
    if result.returncode != 0:
        raise DownloadFailed(f"cannot mirror {url}: {last_line(result.stderr)}")
    if commit and not has_commit(mirror, commit):
        # A commit no branch or tag holds (a submodule pin after a force-push): ask for it by its id.
        run_git("fetch", "-q", url, commit, cwd=mirror)
        if not has_commit(mirror, commit):
            raise DownloadFailed(f"{url} has no commit {commit} (mirrored into git/{mirror.name})")
    if not commit:
        commit = resolve(mirror, branch) or ""
    if commit:
        _pin(mirror, commit)
    return commit, action


def _pin(mirror: Path, commit: str) -> None:
    run_git("update-ref", PIN_REFS + commit, commit, cwd=mirror)


def has_commit(mirror: Path, commit: str) -> bool:
    return run_git("cat-file", "-e", f"{commit}^{{commit}}", cwd=mirror).returncode == 0


def resolve(mirror: Path, revision: str) -> str | None:
    """The commit a branch, tag or commit id names in the mirror; None if none."""
    for ref in (f"refs/heads/{revision}", f"refs/tags/{revision}", revision):
        result = run_git("rev-parse", "--verify", "-q", f"{ref}^{{commit}}", cwd=mirror)
        if result.returncode == 0:
            return result.stdout.strip()
    return None


def read_file(mirror: Path, commit: str, path: str) -> str | None:
    """The text of file `path` at `commit`; None when there is no such file."""
    result = run_git("show", f"{commit}:{path}", cwd=mirror)
    return result.stdout if result.returncode == 0 else None


def list_dir(mirror: Path, commit: str, directory: str) -> list[str]:
    """The names of the files directly in `directory` at `commit` (none when it is missing)."""
    result = run_git("ls-tree", "-z", "--name-only", f"{commit}:{directory}", cwd=mirror)
    return sorted(filter(None, result.stdout.split("\0"))) if result.returncode == 0 else []


def checkout(mirror: Path, commit: str, destination: Path) -> None:
    """The files of `commit` in `destination` (a new directory; objects shared with the mirror)."""
    for args in (("clone", "-q", "--shared", "--no-checkout", str(mirror), str(destination)),
                 ("-c", "advice.detachedHead=false", "checkout", "-q", commit)):
        result = run_git(*args, cwd=destination if args[0] == "-c" else None)
        if result.returncode != 0:
            raise DownloadFailed(f"cannot check out {commit} of {mirror.name}: {last_line(result.stderr)}")


def submodules(mirror: Path, commit: str, url: str) -> tuple[list[Submodule], list[str]]:
    """The submodules `commit` pins (not recursively), with URLs made absolute against `url`.

    Returns them and one line per gitlink that .gitmodules does not explain.
    """
    tree = run_git("ls-tree", "-r", "-z", commit, cwd=mirror)
    links = {}
    for line in filter(None, tree.stdout.split("\0")):
        meta, _, path = line.partition("\t")
        mode, _, sha = meta.split(" ")
        if mode == GITLINK_MODE:
            links[path] = sha
    if not links:
        return [], []
    config = run_git("config", "-z", "--blob", f"{commit}:.gitmodules", "--get-regexp", r"^submodule\..*\.(path|url)$",
                     cwd=mirror)
    fields: dict[str, dict[str, str]] = {}
    for item in filter(None, config.stdout.split("\0")):
        key, _, value = item.partition("\n")
        name, _, field = key[len("submodule."):].rpartition(".")
        fields.setdefault(name, {})[field] = value
    by_path = {entry["path"]: entry.get("url", "") for entry in fields.values() if "path" in entry}
    found, problems = [], []
    for path, sha in sorted(links.items()):
        sub_url = by_path.get(path, "")
        if not sub_url or any(c.isspace() for c in sub_url):
            problems.append(f"{url}: submodule {path} at {commit[:12]} has "
                            + (f"a URL with white space ({sub_url!r})" if sub_url else "no URL in .gitmodules"))
            continue
        found.append(Submodule(path, absolute_url(sub_url, url), sha))
    return found, problems


def absolute_url(url: str, base: str) -> str:
    """A submodule URL as git reads it: `./x` and `../x` are relative to the superproject's URL."""
    if not url.startswith(("./", "../")):
        return url
    parts = base.rstrip("/").split("/")
    for part in PurePosixPath(url).parts:
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def write_urls(into: Path, mirrors: dict[str, str]) -> None:
    """git/urls: `<mirror name> <url>` per line (`mirrors`: URL -> name), sorted, for the runtime script."""
    lines = sorted(f"{name} {url}\n" for url, name in mirrors.items())
    path = into / URLS_FILE
    partial = path.with_name(path.name + ".part")
    partial.write_text("".join(lines), encoding="utf-8")
    partial.replace(path)
