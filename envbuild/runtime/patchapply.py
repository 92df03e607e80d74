"""Apply source patches to installed Python distributions, all or nothing.

Standard library only, Python 3.8+: the generated runtime script embeds this
file verbatim and runs it before envbuild is installed, as

    "$PYTHON" -I - apply --manifest FILE [--site-packages DIR] <<'EOF'
    ...this file...
    EOF

Commands
    apply   apply the manifest's patches in order; write nothing unless every
            patch applies, is already applied, or is optional and skipped
    check   report the state of each patch; change nothing
    verify  like check, and fail unless every patch is applied (or optional
            and skipped)

    --manifest FILE       JSON manifest (below)
    --site-packages DIR   find the distributions in DIR only (default: the
                          running interpreter's sys.path)
    --json                check, verify: the outcomes as one JSON list of
                          {name, status, message, optional, dist, version,
                          files, blocking} on stdout

Exit status: 0 every patch applied or already applied (or optional and
skipped); 1 a patch conflicts, its distribution is missing or has the wrong
version, or a patch it needs is not applied; 2 usage, or an unreadable or
malformed manifest or patch.

Manifest: the patches in the order to apply, each as one metadata line

    #%envbuild-patch {"name": ..., "kind": ..., "dist": ..., "specifier": ..., "optional": ..., "depends": [...]}

followed by the patch text itself, verbatim, up to the next such line (no line
of a text may start with the mark; manifest_text writes the format):
    name        the patch's name, used in every message
    kind        "diff" or "anchored-insert"
    dist        the distribution whose installed files it changes ("vllm")
    specifier   versions it fits, as in PEP 440; "" fits any version. Checked
                with packaging (or pip's vendored copy) where importable, else
                only ==X.Y and ==X.Y.* are understood
    optional    true: skip it, with a message, when its distribution is missing
                or does not fit the specifier (default false)
    depends     names of patches that must be applied first (default [])

A "diff" is a unified diff whose paths, after the a/ and b/ prefixes, are
relative to the distribution's install root (the site-packages directory its
.dist-info sits in); hunks must match exactly, though, as with GNU patch, a
hunk may be found some lines away from where its header puts it. A patch is
already applied when it reverse-applies cleanly to all its files.

An "anchored-insert" changes a file that cannot be vendored and so has no diff:

    file: rixl/_api.py
    anchor: self.create_backend(bknd, init)
    insert: init["ucx_error_handling_mode"] = "none"

puts the insert lines (one or more, in order) just before the only line whose
stripped text is the anchor, at the anchor's indentation. It is already applied
when those lines stand right before the anchor; an anchor that is missing or
not unique is a conflict.

A written file replaces the old one atomically (temporary file and rename), and
its compiled bytecode (__pycache__/<module>.*.pyc, and under
PYTHONPYCACHEPREFIX when set) is removed, since a stale .pyc can outlive its
source when the image compiled it with unchecked hashes.
"""

import argparse
import importlib.metadata
import json
import os
import re
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROG = "envbuild-patch"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

APPLIED = "applied"
APPLICABLE = "applicable"
CONFLICT = "conflict"
VERSION_MISMATCH = "version-mismatch"
NOT_INSTALLED = "not-installed"
BLOCKED = "blocked"
# States that an optional patch turns into a skip instead of a failure.
SKIPPABLE = (VERSION_MISMATCH, NOT_INSTALLED, BLOCKED)


class UsageError(Exception):
    """The manifest or a patch text is malformed."""


# ---------------------------------------------------------------------------
# Versions and specifiers


def _packaging():
    """packaging's SpecifierSet and Version, or pip's vendored copy; None when neither is there."""
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version
    except ImportError:
        try:
            from pip._vendor.packaging.specifiers import SpecifierSet
            from pip._vendor.packaging.version import Version
        except ImportError:
            return None
    return SpecifierSet, Version


_EXACT_RE = re.compile(r"^\s*==\s*(?P<version>[0-9]+(?:\.[0-9]+)*)(?P<wildcard>\.\*)?\s*$")
_RELEASE_RE = re.compile(r"^v?(?:(?P<epoch>[0-9]+)!)?(?P<release>[0-9]+(?:\.[0-9]+)*)(?P<rest>[^+]*)(?:\+.*)?$",
                         re.IGNORECASE)


def _release(text):
    """(epoch, release numbers, what follows them but a +local label) of a version."""
    match = _RELEASE_RE.match(text.strip())
    if not match:
        raise ValueError(f"invalid version {text!r}")
    numbers = tuple(int(n) for n in match.group("release").split("."))
    return int(match.group("epoch") or 0), numbers, match.group("rest").lower()


def _padded(numbers, length):
    return numbers + (0,) * (length - len(numbers))


def version_matches(specifier, version):
    """Whether `version` fits the PEP 440 `specifier` ("" fits any version).

    With packaging (or pip's vendored copy) any specifier works, pre-releases
    included; without it, only `==X.Y` and `==X.Y.*` (which is all a pin needs).
    Raises ValueError for a malformed specifier or version, or one that needs
    packaging where there is none.
    """
    if not specifier.strip():
        return True
    found = _packaging()
    if found is not None:
        specifier_set, version_class = found
        try:
            return specifier_set(specifier).contains(version_class(version), prereleases=True)
        except Exception as exc:  # InvalidSpecifier / InvalidVersion of whichever copy was found
            raise ValueError(f"{exc}") from None
    match = _EXACT_RE.match(specifier)
    if not match:
        raise ValueError(f"specifier {specifier!r} needs the 'packaging' module, which this Python lacks "
                         "(without it only ==X.Y and ==X.Y.* are understood)")
    _, wanted, _ = _release(match.group("version"))
    epoch, numbers, rest = _release(version)
    if epoch:
        return False
    if match.group("wildcard"):
        return _padded(numbers, len(wanted))[:len(wanted)] == wanted
    length = max(len(numbers), len(wanted))
    return _padded(numbers, length) == _padded(wanted, length) and not rest


# ---------------------------------------------------------------------------
# Patch texts


@dataclass
class Hunk:
    number: int
    header: str
    old_start: int
    new_start: int
    old: list = field(default_factory=list)  # lines with their "\n"
    new: list = field(default_factory=list)


@dataclass
class FileDiff:
    path: str
    hunks: list


@dataclass
class Insertion:
    path: str
    anchor: str
    lines: list


_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def _safe_relative(path, where):
    parts = Path(path).parts
    if not path or Path(path).is_absolute() or ".." in parts:
        raise UsageError(f"{where}: path {path!r} must be relative and stay inside the install root")
    return Path(*parts).as_posix()


def _diff_path(header_line, prefix):
    path = header_line[4:].split("\t")[0].strip()
    if path == "/dev/null":
        raise UsageError(f"creating or deleting files is not supported ({header_line.strip()})")
    if path.startswith(prefix):
        path = path[len(prefix):]
    return path


def parse_diff(text, where="patch"):
    """Parse a unified diff into FileDiffs; raises UsageError if malformed."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    files = []
    i = 0
    while i < len(lines):
        if not (lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")):
            i += 1  # git headers, index lines and free text between files
            continue
        old_path = _diff_path(lines[i], "a/")
        new_path = _diff_path(lines[i + 1], "b/")
        if old_path != new_path:
            raise UsageError(f"{where}: renames are not supported ({old_path} -> {new_path})")
        path = _safe_relative(new_path, where)
        if any(f.path == path for f in files):
            raise UsageError(f"{where}: {path} appears twice")
        i += 2
        hunks = []
        while i < len(lines) and lines[i].startswith("@@"):
            hunk, i = _parse_hunk(lines, i, len(hunks) + 1, f"{where}: {path}")
            hunks.append(hunk)
        if not hunks:
            raise UsageError(f"{where}: {path} has no hunks")
        files.append(FileDiff(path, hunks))
    if not files:
        raise UsageError(f"{where}: no file diffs found")
    return files


def _parse_hunk(lines, i, number, where):
    match = _HUNK_RE.match(lines[i])
    if not match:
        raise UsageError(f"{where}: malformed hunk header {lines[i]!r}")
    old_count = int(match.group(2) if match.group(2) is not None else 1)
    new_count = int(match.group(4) if match.group(4) is not None else 1)
    hunk = Hunk(number, lines[i], int(match.group(1)), int(match.group(3)))
    i += 1
    last_sides = ()
    while len(hunk.old) < old_count or len(hunk.new) < new_count:
        if i >= len(lines):
            raise UsageError(f"{where}: hunk #{number} ends early")
        line = lines[i]
        op, body = line[:1], line[1:] + "\n"
        if line == "":  # some tools drop the space of an empty context line
            op, body = " ", "\n"
        if op == " ":
            last_sides = (hunk.old, hunk.new)
        elif op == "-":
            last_sides = (hunk.old,)
        elif op == "+":
            last_sides = (hunk.new,)
        else:
            raise UsageError(f"{where}: hunk #{number}: unexpected line {line!r}")
        for side in last_sides:
            side.append(body)
        i += 1
        if i < len(lines) and lines[i].startswith("\\"):  # "\ No newline at end of file"
            for side in last_sides:
                side[-1] = side[-1][:-1]
            i += 1
    if len(hunk.old) != old_count or len(hunk.new) != new_count:
        raise UsageError(f"{where}: hunk #{number} does not match its header counts")
    return hunk, i


def parse_insertion(text, where="patch"):
    """Parse an anchored insertion (file/anchor/insert lines)."""
    values = {"file": [], "anchor": [], "insert": []}
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if not sep or key.strip() not in values:
            expected = "'file:', 'anchor:' or 'insert:'"
            raise UsageError(f"{where}: line {number}: expected {expected}, got {line!r}")
        values[key.strip()].append(value.strip())
    for key in ("file", "anchor"):
        if len(values[key]) != 1 or not values[key][0]:
            raise UsageError(f"{where}: needs exactly one non-empty '{key}:' line")
    if not values["insert"] or not all(values["insert"]):
        raise UsageError(f"{where}: needs at least one non-empty 'insert:' line")
    return Insertion(_safe_relative(values["file"][0], where), values["anchor"][0], values["insert"])


# ---------------------------------------------------------------------------
# Matching


class Mismatch(Exception):
    """A change does not fit a file; the message says where and how."""


def _split_lines(text):
    # str.splitlines() would also split at form feeds and other separators
    # that diff treats as ordinary characters.
    parts = text.split("\n")
    last = parts.pop()
    lines = [part + "\n" for part in parts]
    if last:
        lines.append(last)
    return lines


def _shown(line):
    return repr(line[:-1] if line.endswith("\n") else line)


def _find_block(lines, block, expected, lowest):
    """Index nearest to `expected` (not below `lowest`) where `block` starts."""
    highest = len(lines) - len(block)
    expected = min(max(expected, lowest), max(highest, lowest))
    for distance in range(0, max(highest - lowest, 0) + 1):
        for at in (expected - distance, expected + distance):
            if lowest <= at <= highest and lines[at:at + len(block)] == block:
                return at
    return None


def _describe_mismatch(lines, hunk, old, at):
    for index, expected in enumerate(old):
        found = lines[at + index] if 0 <= at + index < len(lines) else None
        if found != expected:
            shown = _shown(found) if found is not None else "end of file"
            return (
                f"hunk #{hunk.number} ({hunk.header}) does not match at line {at + index + 1}: "
                f"expected {_shown(expected)}, found {shown}"
            )
    return f"hunk #{hunk.number} ({hunk.header}) does not fit after the hunk before it"


def apply_hunks(lines, hunks, reverse=False):
    """Return `lines` with every hunk applied (undone if `reverse`).

    Raises Mismatch naming the first hunk that does not match exactly.
    """
    result = []
    consumed = 0
    offset = 0
    for hunk in hunks:
        old, new = (hunk.new, hunk.old) if reverse else (hunk.old, hunk.new)
        start = hunk.new_start if reverse else hunk.old_start
        # A header's start is the line before the change when nothing is removed.
        base = start - 1 if old else start
        at = _find_block(lines, old, base + offset, consumed)
        if at is None:
            raise Mismatch(_describe_mismatch(lines, hunk, old, max(base + offset, consumed)))
        result.extend(lines[consumed:at])
        result.extend(new)
        consumed = at + len(old)
        offset = at - base
    result.extend(lines[consumed:])
    return result


def insertion_state(lines, insertion):
    """(True, lines) when already inserted, else (False, lines with the insertion)."""
    anchors = [i for i, line in enumerate(lines) if line.strip() == insertion.anchor]
    if not anchors:
        raise Mismatch(f"anchor line {insertion.anchor!r} not found")
    if len(anchors) > 1:
        found = ", ".join(str(i + 1) for i in anchors)
        raise Mismatch(f"anchor line {insertion.anchor!r} is not unique: found at lines {found}")
    at = anchors[0]
    anchor = lines[at]
    indent = anchor[: len(anchor) - len(anchor.lstrip())]
    ending = anchor[len(anchor.rstrip("\r\n")):] or "\n"
    block = [indent + text + ending for text in insertion.lines]
    if lines[max(at - len(block), 0):at] == block:
        return True, lines
    return False, lines[:at] + block + lines[at:]


# ---------------------------------------------------------------------------
# Patches against installed distributions


@dataclass
class Patch:
    name: str
    kind: str
    dist: str
    specifier: str
    text: str
    optional: bool = False
    depends: tuple = ()

    def changes(self):
        """[(relative path, change)] where change is a hunk list or an Insertion."""
        where = f"patch {self.name}"
        if self.kind == "diff":
            return [(f.path, f.hunks) for f in parse_diff(self.text, where)]
        if self.kind == "anchored-insert":
            insertion = parse_insertion(self.text, where)
            return [(insertion.path, insertion)]
        raise UsageError(f"{where}: unknown kind {self.kind!r}")


@dataclass
class Outcome:
    name: str
    status: str
    message: str
    optional: bool = False
    dist: str = ""
    version: str = ""
    files: tuple = ()

    @property
    def blocking(self):
        """Whether this outcome stops the run."""
        if self.status in (APPLIED, APPLICABLE):
            return False
        return not (self.optional and self.status in SKIPPABLE)


@dataclass
class _File:
    path: Path
    original: bytes
    lines: list


def _normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def find_distribution(name, site_packages=None):
    """The installed distribution `name`, or None.

    With `site_packages`, only that directory is searched.
    """
    if site_packages is None:
        try:
            return importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            return None
    for dist in importlib.metadata.distributions(path=[str(site_packages)]):
        if _normalize(dist.metadata["Name"] or "") == _normalize(name):
            return dist
    return None


class Run:
    """Evaluates patches in order against a simulated tree; writes on request."""

    def __init__(self, site_packages=None):
        self.site_packages = site_packages
        self.files = {}  # absolute Path -> _File
        self.outcomes = []
        self._dists = {}

    def _dist(self, name):
        if name not in self._dists:
            self._dists[name] = find_distribution(name, self.site_packages)
        return self._dists[name]

    def _file(self, path):
        if path not in self.files:
            original = path.read_bytes()
            try:
                text = original.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise Mismatch(f"{path} is not UTF-8 text ({exc})") from None
            self.files[path] = _File(path, original, _split_lines(text))
        return self.files[path]

    def evaluate(self, patch):
        self.outcomes.append(self._evaluate(patch))

    def _evaluate(self, patch):
        def outcome(status, message, dist="", version="", files=()):
            return Outcome(patch.name, status, message, patch.optional, dist, version, files)

        done = {o.name: o.status for o in self.outcomes}
        for needed in patch.depends:
            state = done.get(needed)
            if state not in (APPLIED, APPLICABLE):
                why = "is not in this run" if state is None else "is " + state
                return outcome(BLOCKED, f"needs patch {needed}, which {why}")
        changes = patch.changes()
        dist = self._dist(patch.dist)
        if dist is None:
            where = self.site_packages if self.site_packages is not None else f"the sys.path of {sys.executable}"
            return outcome(NOT_INSTALLED, f"distribution {patch.dist} is not installed (looked in {where})")
        version = dist.version
        files = tuple(path for path, _ in changes)
        try:
            fits = version_matches(patch.specifier, version)
        except ValueError as exc:
            raise UsageError(f"patch {patch.name}: {exc}") from None
        if not fits:
            return outcome(
                VERSION_MISMATCH,
                f"wants {patch.dist} {patch.specifier}, found {patch.dist} {version}",
                patch.dist, version, files,
            )
        recorded = {p.as_posix() for p in dist.files} if dist.files is not None else None
        results = []
        for relative, change in changes:
            try:
                if recorded is not None and relative not in recorded:
                    raise Mismatch(f"not a file of {patch.dist} {version} (its RECORD does not list it)")
                target = Path(dist.locate_file(relative))
                if not target.is_file():
                    raise Mismatch(f"no such file: {target}")
                state = self._file(target)
                results.append((relative, state) + _classify(state.lines, change))
            except Mismatch as exc:
                return outcome(CONFLICT, f"does not apply to {relative}: {exc}", patch.dist, version, files)
        applied = [relative for relative, _, was_applied, _ in results if was_applied]
        if len(applied) == len(results):
            return outcome(APPLIED, "already applied", patch.dist, version, files)
        if applied:
            pending = [relative for relative, _, was_applied, _ in results if not was_applied]
            message = f"partly applied: {', '.join(applied)} already changed, {', '.join(pending)} not"
            return outcome(CONFLICT, message, patch.dist, version, files)
        for _, state, _, new_lines in results:
            state.lines = new_lines
        return outcome(APPLICABLE, "applicable", patch.dist, version, files)

    def write(self):
        """Write every changed file; on an error, restore those already written."""
        written = []
        try:
            for state in self.files.values():
                data = "".join(state.lines).encode("utf-8")
                if data == state.original:
                    continue
                _replace(state.path, data)
                written.append(state)
                remove_bytecode(state.path)
        except OSError:
            for state in written:
                _replace(state.path, state.original)
            raise
        return [state.path for state in written]


def _classify(lines, change):
    """(already applied, lines after applying) for one file's change."""
    if isinstance(change, Insertion):
        return insertion_state(lines, change)
    try:
        forward = apply_hunks(lines, change)
    except Mismatch as exc:
        forward, failure = None, exc
    try:
        apply_hunks(lines, change, reverse=True)
        reverses = True
    except Mismatch:
        reverses = False
    if forward is not None and reverses:
        raise Mismatch("the patch applies both forward and in reverse; refusing to guess")
    if reverses:
        return True, lines
    if forward is None:
        raise failure
    return False, forward


def _replace(path, data):
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".envbuild-tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, path.stat().st_mode & 0o7777)
        os.replace(temporary, str(path))
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def remove_bytecode(source):
    """Remove the compiled bytecode of `source` (every interpreter and level)."""
    source = Path(source)
    module = source.stem
    caches = [source.parent / "__pycache__"]
    prefix = os.environ.get("PYTHONPYCACHEPREFIX")
    if prefix:
        # The layout importlib uses: the prefix, then the source's absolute directory.
        caches.append(Path(prefix) / os.path.abspath(source.parent).lstrip(os.sep))
    for cache in caches:
        if cache.is_dir():
            for compiled in cache.glob(module + ".*.pyc"):
                compiled.unlink()


def evaluate(patches, site_packages=None):
    """Evaluate `patches` in order without writing; returns the Run."""
    run = Run(site_packages)
    for patch in patches:
        run.evaluate(patch)
    return run


def apply(patches, site_packages=None):
    """Apply `patches` if none blocks; returns (outcomes, written paths)."""
    run = evaluate(patches, site_packages)
    if any(outcome.blocking for outcome in run.outcomes):
        return run.outcomes, []
    return run.outcomes, run.write()


# ---------------------------------------------------------------------------
# Command line


MANIFEST_MARK = "#%envbuild-patch "


def load_manifest(path):
    """The patches of a manifest file, in order (format: see the module's docstring)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read manifest {path}: {exc}") from None
    return parse_manifest(text, f"manifest {path}")


def parse_manifest(text, where="manifest"):
    records = []
    for line in text.splitlines(keepends=True):
        if line.startswith(MANIFEST_MARK):
            records.append([line[len(MANIFEST_MARK):], []])
        elif records:
            records[-1][1].append(line)
        elif line.strip():
            raise UsageError(f"{where}: expected a '{MANIFEST_MARK.strip()}' line first, got {line.strip()!r}")
    if not records:
        raise UsageError(f"{where}: no patches in it")
    patches = []
    for index, (header, lines) in enumerate(records):
        try:
            entry = json.loads(header)
            patches.append(
                Patch(
                    name=_field(entry, "name", str),
                    kind=_field(entry, "kind", str),
                    dist=_field(entry, "dist", str),
                    specifier=_field(entry, "specifier", str),
                    text="".join(lines),
                    optional=_field(entry, "optional", bool, False),
                    depends=_names(_field(entry, "depends", list, [])),
                )
            )
        except ValueError as exc:
            raise UsageError(f"{where}: patch #{index + 1}: its metadata line is not JSON: {exc}") from None
        except UsageError as exc:
            raise UsageError(f"{where}: patch #{index + 1}: {exc}") from None
    return patches


def _field(entry, key, kind, default=None):
    if not isinstance(entry, dict):
        raise UsageError("expected an object")
    if key not in entry:
        if default is None:
            raise UsageError(f"missing {key!r}")
        return default
    value = entry[key]
    if not isinstance(value, kind):
        raise UsageError(f"{key!r} must be a {kind.__name__}")
    return value


def _names(values):
    if not all(isinstance(value, str) for value in values):
        raise UsageError("'depends' must list patch names")
    return tuple(values)


def manifest_text(patches):
    """The manifest of `patches` (Patch objects, in order): what load_manifest reads back."""
    parts = []
    for patch in patches:
        if MANIFEST_MARK in "\n" + patch.text:
            raise UsageError(f"patch {patch.name}: a line of its text starts with {MANIFEST_MARK.strip()!r}")
        metadata = {"name": patch.name, "kind": patch.kind, "dist": patch.dist, "specifier": patch.specifier,
                    "optional": patch.optional, "depends": list(patch.depends)}
        text = patch.text if patch.text.endswith("\n") else patch.text + "\n"
        parts.append(MANIFEST_MARK + json.dumps(metadata, sort_keys=True) + "\n" + text)
    return "".join(parts)


def _report_line(outcome, applying):
    if outcome.status == APPLICABLE and applying:
        text = f"applied to {outcome.dist} {outcome.version} ({', '.join(outcome.files)})"
    elif outcome.status in SKIPPABLE and outcome.optional:
        text = "skipped (optional): " + outcome.message
    elif outcome.blocking:
        text = "error: " + outcome.message
    else:
        text = outcome.message
    return f"{PROG}: {outcome.name}: {text}"


def main(argv):
    parser = argparse.ArgumentParser(prog=PROG, description="Apply or check envbuild source patches.")
    parser.add_argument("command", choices=("apply", "check", "verify"))
    parser.add_argument("--manifest", required=True, help="manifest of the patches, in order (see the docstring)")
    parser.add_argument("--site-packages", help="search the distributions in this directory only")
    parser.add_argument("--json", action="store_true",
                        help="check and verify: print the outcomes as one JSON list on stdout instead of lines")
    args = parser.parse_args(argv)
    site_packages = Path(args.site_packages) if args.site_packages else None
    applying = args.command == "apply"
    try:
        patches = load_manifest(args.manifest)
        if applying:
            outcomes, _ = apply(patches, site_packages)
        else:
            outcomes = evaluate(patches, site_packages).outcomes
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    failed = any(outcome.blocking for outcome in outcomes)
    if args.command == "verify":
        # Every patch must be in place (or optional and skipped), not merely applicable.
        failed = failed or any(outcome.status == APPLICABLE for outcome in outcomes)
    if args.json and not applying:
        print(json.dumps([dict(asdict(outcome), blocking=outcome.blocking) for outcome in outcomes]))
        return EXIT_FAILED if failed else EXIT_OK
    for outcome in outcomes:
        stream = sys.stderr if outcome.blocking else sys.stdout
        print(_report_line(outcome, applying and not failed), file=stream)
    if failed and applying:
        print(f"{PROG}: nothing was changed", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
