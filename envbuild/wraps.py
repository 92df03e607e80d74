"""Meson wraps of git sources, for `envbuild fetch`: what `meson setup` would download.

A git source's `subprojects/*.wrap` at its pinned commit names, per
subproject, either archives (`[wrap-file]`: `source_url`/`source_filename`/
`source_hash`, the same for `patch_*`, with `*_fallback_url`) or a git
repository (`[wrap-git]`: `url`, `revision`, `clone-recursive`). Archives are
downloaded to `meson/packagecache/<filename>`, checked against their sha256;
the runtime script puts them into the source's `subprojects/packagecache/`,
where meson looks before downloading. Repositories are mirrored like any git
source and reached through git/urls. `[wrap-redirect]` points at a wrap inside
another subproject, which meson reads once that one is in place: nested
subprojects' own wraps are not followed.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field

PACKAGECACHE = "meson/packagecache"


@dataclass(frozen=True)
class Archive:
    """An archive a wrap-file names: its file name in the package cache, where to get it, its sha256."""

    filename: str
    urls: tuple[str, ...]  # the URL, then the fallback URL
    sha256: str


@dataclass(frozen=True)
class Repository:
    """The git repository a wrap-git names, at `revision` (a commit, branch or tag)."""

    url: str
    revision: str
    recursive: bool


@dataclass
class Wrap:
    """What one wrap file needs downloaded, and why it cannot be (one line each)."""

    archives: list[Archive] = field(default_factory=list)
    repositories: list[Repository] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse(text: str, where: str) -> Wrap:
    """The needs of a wrap file's text; `where` names it in problems."""
    wrap = Wrap()
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        wrap.problems.append(f"{where}: not a wrap file: {str(exc).splitlines()[0]}")
        return wrap
    if parser.has_section("wrap-file"):
        section = parser["wrap-file"]
        for what in ("source", "patch"):
            filename = section.get(f"{what}_filename", "")
            urls = tuple(filter(None, (section.get(f"{what}_url"), section.get(f"{what}_fallback_url"))))
            if not urls:
                if what == "source" and filename:
                    wrap.problems.append(f"{where}: {what}_filename {filename} has no {what}_url to download it from")
                continue
            digest = section.get(f"{what}_hash", "")
            if not filename or "/" in filename or not digest:
                wrap.problems.append(f"{where}: {what}_url needs a plain {what}_filename and a {what}_hash")
                continue
            wrap.archives.append(Archive(filename, urls, digest.lower()))
    elif parser.has_section("wrap-git"):
        section = parser["wrap-git"]
        if not section.get("url"):
            wrap.problems.append(f"{where}: wrap-git without a url")
        else:
            wrap.repositories.append(Repository(section["url"], section.get("revision", "HEAD"),
                                                section.get("clone-recursive", "false").lower() == "true"))
    elif parser.has_section("wrap-hg") or parser.has_section("wrap-svn"):
        kind = "wrap-hg" if parser.has_section("wrap-hg") else "wrap-svn"
        wrap.problems.append(f"{where}: {kind} is not fetched (only wrap-file and wrap-git are)")
    return wrap
