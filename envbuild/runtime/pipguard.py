"""Keeps pip steps from replacing what the base image's Python already has.

The runtime script's `_eb_pip` runs this program (embedded; standard library
only, Python 3.8+) with the recipe's protected distributions
(its `python.protected`):

  pipguard.py constraints NAME...
      prints pip constraints, one `name==version  # why` line for each
      installed NAME and for everything it requires as installed (a
      requirement that is not installed, or that only an extra wants, is left
      out), sorted by name; nothing when none is installed. pip then cannot
      install another version of any of them.

  pipguard.py replaced CONSTRAINTS REPORT
      reads CONSTRAINTS (as written above) and REPORT (what
      `pip install --dry-run --report REPORT` wrote without them) and prints
      one line naming each constrained distribution the install would
      replace, with both versions and what asks for the new one
      (`torch 2.9.0+rocm would become 2.8.0 (required by foo 1.0; protected)`); exit 1 when
      there is one, 0 when there is none.

  pipguard.py expect NAME==VERSION...
      prints one line for each NAME this Python does not have at VERSION
      (`torch 2.8.0 (2.9.0+rocm here)`, `torch 2.8.0 (not installed here)`):
      what a locked pip group takes from the base image it was locked
      against; exit 1 when there is one, 0 when there is none.

  pipguard.py report NAME... -- PIP_INSTALL_ARGUMENTS...
      what `pip install --dry-run PIP_INSTALL_ARGUMENTS` would install when
      constrained as `constraints NAME...` says, as one JSON document on
      stdout: {"install": [the items of pip's installation report],
      "environment": {pip's marker environment}, "installed": {name:
      version of every installed distribution}}; pip's own output goes to
      stderr, and its exit status is this program's. `envbuild lock` runs it
      in a container of the base image.

Exit 2 on bad arguments.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

# PEP 440 versions (its appendix); anything else is pinned with === (arbitrary equality).
VERSION = re.compile(
    r"^\s*v?(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*(?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?[0-9]*)?"
    r"(?:-[0-9]+|[-_.]?(?:post|rev|r)[-_.]?[0-9]*)?(?:[-_.]?dev[-_.]?[0-9]*)?(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?\s*$",
    re.IGNORECASE,
)
NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
EXTRA_MARKER = re.compile(r"\bextra\s*==")


def canonical(name):
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed():
    """{canonical name: distribution} of what this Python imports (the first of a name on sys.path)."""
    # The working directory (a source tree, where pip steps run) is not installed.
    sys.path[:] = [entry for entry in sys.path if entry not in ("", os.getcwd())]
    import importlib.metadata as metadata

    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist)
    return found


def required_names(dist):
    """The names of what `dist` requires, those wanted only by an extra left out."""
    names = []
    for requirement in dist.requires or ():
        _, _, marker = requirement.partition(";")
        match = NAME.match(requirement)
        if match and not EXTRA_MARKER.search(marker):
            names.append(canonical(match.group(1)))
    return names


def constraint_lines(names, dists):
    """The `name==version  # why` lines that pin `names` and what they require, as installed."""
    why = {}
    pending = [(canonical(name), "protected") for name in names]
    while pending:
        name, reason = pending.pop(0)
        if name in why or name not in dists:
            continue
        why[name] = reason
        pending += [(dep, "needed by " + name) for dep in required_names(dists[name])]
    lines = []
    for name in sorted(why):
        version = dists[name].version
        operator = "==" if VERSION.match(version) else "==="
        lines.append("%s%s%s  # %s" % (name, operator, version, why[name]))
    return lines


def replaced(constraints_path, report_path):
    pinned = {}
    with open(constraints_path) as lines:
        for line in lines:
            match = re.match(r"^(\S+?)(===?)(\S+)\s+#\s*(.*)$", line)
            if match:
                pinned[match.group(1)] = (match.group(3), match.group(4))
    with open(report_path) as report:
        items = json.load(report).get("install", [])
    found = 0
    for item in items:
        name = canonical(item["metadata"]["name"])
        version = item["metadata"]["version"]
        if name not in pinned or pinned[name][0] == version:
            continue
        askers = ["%s %s" % (other["metadata"]["name"], other["metadata"]["version"]) for other in items
                  if any(NAME.match(r) and canonical(NAME.match(r).group(1)) == name
                         for r in other["metadata"].get("requires_dist") or ())]
        asked = ("required by " + ", ".join(askers)) if askers else "requested"
        why = pinned[name][1]
        print("%s %s would become %s (%s; %s)" % (
            name, pinned[name][0], version, asked, why if why == "protected" else "protected as " + why))
        found += 1
    return 1 if found else 0


def expect(pins):
    dists = installed()
    found = 0
    for pin in pins:
        name, _, version = pin.partition("==")
        dist = dists.get(canonical(name))
        if dist is None or dist.version != version:
            print("%s %s (%s here)" % (name, version, dist.version if dist else "not installed"))
            found += 1
    return 1 if found else 0


def report(names, pip_args):
    dists = installed()
    # As the runtime script's _eb_pip_install runs pip: the image is ours to manage.
    env = dict(os.environ, PIP_ROOT_USER_ACTION="ignore", PIP_BREAK_SYSTEM_PACKAGES="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    with tempfile.TemporaryDirectory(prefix="envbuild-pipguard.") as scratch:
        pinned = os.path.join(scratch, "constraints.txt")
        with open(pinned, "w") as out:
            out.write("".join(line + "\n" for line in constraint_lines(names, dists)))
        written = os.path.join(scratch, "report.json")
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-input",
                   "--report", written, "-c", pinned] + pip_args
        status = subprocess.call(command, env=env, stdout=sys.stderr)
        if status != 0:
            return status
        with open(written) as document:
            found = json.load(document)
    print(json.dumps({"install": found.get("install", []), "environment": found.get("environment", {}),
                      "installed": {name: dist.version for name, dist in sorted(dists.items())}}))
    return 0


def main(argv):
    if len(argv) >= 1 and argv[0] == "constraints":
        print("".join(line + "\n" for line in constraint_lines(argv[1:], installed())), end="")
        return 0
    if len(argv) == 3 and argv[0] == "replaced":
        return replaced(argv[1], argv[2])
    if len(argv) >= 1 and argv[0] == "expect":
        return expect(argv[1:])
    if "--" in argv and argv[0] == "report":
        split = argv.index("--")
        return report(argv[1:split], argv[split + 1:])
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
