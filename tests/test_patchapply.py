"""The patch applier (envbuild/runtime/patchapply.py) and patch metadata, on small trees of our own.

The applier runs the way the runtime script runs it: `python -I -` with the
program on stdin. The vLLM patches themselves are tested in test_vllm_patches.py.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from envbuild.errors import RecipeError
from envbuild.runtime import patchapply
from envbuild.spec import patches
from patching import APPLIER, RIXL_API, fake_distribution, run_applier, snapshot, write_manifest

VLLM_PATCHES = [
    "moriep-fp8-compat", "moriio-save-kv-bounded-wait", "moriio-load-kv-bounded-wait",
    "scheduler-read-mode", "moriio-engine-timeouts", "idle-kv-reaper",
]


# ---------------------------------------------------------------------------
# Metadata


def test_catalog_holds_the_seven_patches_with_their_dependencies(catalog):
    assert sorted(catalog) == sorted(VLLM_PATCHES + ["rixl-ucx-error-mode"])
    assert catalog["idle-kv-reaper"].depends == ("scheduler-read-mode",)
    assert catalog["moriio-load-kv-bounded-wait"].depends == ("moriio-save-kv-bounded-wait",)
    assert catalog["rixl-ucx-error-mode"].kind == "anchored-insert"
    assert {spec.dist for spec in catalog.values()} == {"vllm", "rixl"}
    assert all(spec.specifier == "==0.17.1" for spec in catalog.values() if spec.dist == "vllm")
    assert all(len(spec.description) > 100 for spec in catalog.values())


def test_select_adds_dependencies_and_orders_them_first(catalog):
    names = [spec.name for spec in patches.select(catalog, ["idle-kv-reaper", "moriep-fp8-compat"])]
    assert names == ["moriep-fp8-compat", "scheduler-read-mode", "idle-kv-reaper"]
    everything = [spec.name for spec in patches.select(catalog, reversed(list(catalog)))]
    for spec in catalog.values():
        assert all(everything.index(needed) < everything.index(spec.name) for needed in spec.depends)


def test_select_refuses_an_unknown_name_at_the_callers_line(catalog):
    with pytest.raises(RecipeError) as caught:
        patches.select(catalog, ["no-such-patch"], display="recipes/x.yaml", line=7)
    problem = caught.value.problems[0]
    assert (problem.file, problem.line, problem.key) == ("recipes/x.yaml", 7, "patches")
    assert "no-such-patch" in problem.message


def test_show_prints_metadata_then_the_patch(catalog):
    spec = catalog["idle-kv-reaper"]
    shown = patches.show(spec)
    assert "name:        idle-kv-reaper" in shown
    assert "targets:     vllm ==0.17.1" in shown
    assert "depends:     scheduler-read-mode" in shown
    assert "RIXL can lose finished_sending" in shown
    assert shown.endswith(spec.text)


GOOD_DIFF = textwrap.dedent("""\
    --- a/pkg/mod.py
    +++ b/pkg/mod.py
    @@ -1,2 +1,2 @@
     first = 1
    -second = 2
    +second = 3
    """)


def write_patch_dir(root: Path, name: str, metadata: str, files: dict | None = None) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "patches.yaml").write_text(textwrap.dedent(metadata))
    for file_name, text in (files or {"a.patch": GOOD_DIFF}).items():
        (directory / file_name).write_text(text)
    return directory


def entry(**fields):
    values = {"name": "a", "file": "a.patch", "dist": "pkg", "specifier": '"==1.0"', "description": "Why."}
    values.update(fields)
    lines = [f"    {key}: {value}" for key, value in values.items() if value is not None]
    return "  - " + "\n".join(lines)[4:]


@pytest.mark.parametrize("metadata, line, key, message", [
    ("patches:\n" + entry(colour="red"), 7, "patches[0].colour", "unknown key"),
    ("patches:\n" + entry(description=None), 2, "patches[0].description", "missing required key"),
    ("patches:\n" + entry(specifier='"=>1.0"'), 5, "patches[0].specifier", "not a version specifier"),
    ("patches:\n" + entry(kind="sed"), 7, "patches[0].kind", "is not one of"),
    ("patches:\n" + entry(file="missing.patch"), 3, "patches[0].file", "no such file"),
    ("patches:\n" + entry(file="bad.patch"), 3, "patches[0].file", "not a valid diff"),
    ("patches:\n" + entry(depends="[b]"), 7, "depends", "unknown patch 'b'"),
    ("patches:\n" + entry(depends="[b]") + "\n" + entry(name="b", depends="[a]"), 7, "depends",
     "dependency cycle: a -> b -> a"),
    ("patches:\n" + entry() + "\n" + entry(), 7, "name", "defined already"),
    ("patch:\n" + entry(), 1, "patch", "unknown key"),
])
def test_metadata_problems_name_file_line_and_key(tmp_path, metadata, line, key, message):
    bad_diff = "--- a/x\n+++ b/x\n@@ nonsense\n"
    write_patch_dir(tmp_path, "pkg-1.0", metadata, {"a.patch": GOOD_DIFF, "bad.patch": bad_diff})
    with pytest.raises(RecipeError) as caught:
        patches.load_catalog(tmp_path)
    found = [(p.file.endswith("pkg-1.0/patches.yaml"), p.line, p.key) for p in caught.value.problems]
    assert (True, line, key) in found, caught.value
    assert message in str(caught.value)


def test_a_name_defined_in_two_directories_is_refused(tmp_path):
    write_patch_dir(tmp_path, "one", "patches:\n" + entry())
    write_patch_dir(tmp_path, "two", "patches:\n" + entry())
    with pytest.raises(RecipeError, match=r"two/patches.yaml:2: name: patch 'a' is defined already in .*one"):
        patches.load_catalog(tmp_path)


VERSIONS = [
    "0.17.1", "0.17.1+rocm700", "0.17.0", "0.17", "0.17.10", "0.17.1rc1", "0.17.1.dev3", "0.17.1.post1",
    "0.17.1a1+local.7", "0.18.0", "1!0.1", "0.17.1.post1.dev2",
]
SPECIFIERS = [
    "==0.17.1", "!=0.17.1", ">=0.17.1", "<0.17.1", ">0.17.1", "<=0.17.1", "~=0.17.0", "~=0.17", "==0.17.*",
    "!=0.17.*", ">=0.17,<0.18", "==0.17.1+rocm700", "", "<0.17.1rc2", ">0.17.1.post0", "==0.17.1.0",
]


@pytest.mark.parametrize("specifier", SPECIFIERS)
def test_specifiers_are_checked_as_packaging_checks_them(specifier):
    for version in VERSIONS:
        expected = SpecifierSet(specifier).contains(Version(version), prereleases=True)
        assert patchapply.version_matches(specifier, version) == expected, (specifier, version)


EXACT_SPECIFIERS = ["==0.17.1", "==0.17.*", "==0.17.1.0", "==0.17", "==0.*", "==1.0.*"]


@pytest.mark.parametrize("specifier", EXACT_SPECIFIERS)
def test_without_packaging_exact_pins_still_agree_with_packaging(specifier, monkeypatch):
    monkeypatch.setattr(patchapply, "_packaging", lambda: None)
    for version in VERSIONS:
        expected = SpecifierSet(specifier).contains(Version(version), prereleases=True)
        assert patchapply.version_matches(specifier, version) == expected, (specifier, version)


def test_a_python_without_packaging_refuses_a_range_and_says_why(tmp_path):
    site = fake_distribution(tmp_path / "site", "pkg", "1.0", {"pkg/mod.py": "first = 1\nsecond = 2\n"})
    no_site = ("-I", "-S")  # no site-packages: neither packaging nor pip's copy can be imported
    exact = run_applier("check", manifest_of(tmp_path / "a.manifest", {"name": "p", "text": GOOD_DIFF,
                                                                        "specifier": "==1.0"}), site, python_flags=no_site)
    assert exact.returncode == 0, exact.stderr
    ranged = run_applier("check", manifest_of(tmp_path / "b.manifest", {"name": "p", "text": GOOD_DIFF,
                                                                         "specifier": ">=1.0"}), site, python_flags=no_site)
    assert ranged.returncode == 2
    assert "specifier '>=1.0' needs the 'packaging' module, which this Python lacks" in ranged.stderr


def test_applier_is_python_3_8_syntax_and_imports_packaging_only_if_it_is_there():
    tree = ast.parse(APPLIER, feature_version=(3, 8))
    optional = {node.module.split(".")[0] for handler in ast.walk(tree) if isinstance(handler, ast.Try)
                for node in ast.walk(handler) if isinstance(node, ast.ImportFrom)}
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert optional == {"packaging", "pip"}
    assert imported - optional <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


# ---------------------------------------------------------------------------
# The applier on small trees of our own


def manifest_of(path: Path, *entries) -> Path:
    path.write_text(patchapply.manifest_text([patchapply.Patch(**dict({"kind": "diff", "dist": "pkg", "specifier": ""}, **e))
                                              for e in entries]))
    return path


def test_hunks_are_found_at_an_offset_but_must_match_exactly(tmp_path):
    site = fake_distribution(tmp_path / "site", "pkg", "1.0", {"pkg/mod.py": "x = 0\ny = 0\nfirst = 1\nsecond = 2\n"})
    manifest = manifest_of(tmp_path / "m.manifest", {"name": "p", "text": GOOD_DIFF})
    result = run_applier("apply", manifest, site)
    assert result.returncode == 0, result.stderr
    assert (site / "pkg/mod.py").read_text() == "x = 0\ny = 0\nfirst = 1\nsecond = 3\n"
    (site / "pkg/mod.py").write_text("first = 1\nsecond =  2\n")
    result = run_applier("apply", manifest, site)
    assert result.returncode == 1
    assert "p: error: does not apply to pkg/mod.py: hunk #1 (@@ -1,2 +1,2 @@) does not match at line 2: " \
           "expected 'second = 2', found 'second =  2'" in result.stderr


def test_a_file_without_final_newline_round_trips(tmp_path):
    diff = "--- a/pkg/mod.py\n+++ b/pkg/mod.py\n@@ -1 +1 @@\n-a = 1\n\\ No newline at end of file\n+a = 2\n" \
           "\\ No newline at end of file\n"
    site = fake_distribution(tmp_path / "site", "pkg", "1.0", {"pkg/mod.py": "a = 1"})
    manifest = manifest_of(tmp_path / "m.manifest", {"name": "p", "text": diff})
    assert run_applier("apply", manifest, site).returncode == 0
    assert (site / "pkg/mod.py").read_bytes() == b"a = 2"
    assert "already applied" in run_applier("apply", manifest, site).stdout


def test_usage_errors_exit_2(tmp_path):
    site = fake_distribution(tmp_path / "site", "pkg", "1.0", {"pkg/mod.py": "a = 1\n"})
    (tmp_path / "bad.manifest").write_text("#%envbuild-patch {\n")
    assert run_applier("apply", tmp_path / "bad.manifest", site).returncode == 2
    escaping = GOOD_DIFF.replace("pkg/mod.py", "../outside.py")
    result = run_applier("apply", manifest_of(tmp_path / "m.manifest", {"name": "p", "text": escaping}), site)
    assert result.returncode == 2 and "stay inside the install root" in result.stderr
    result = subprocess.run([sys.executable, "-I", "-", "apply"], input=APPLIER, capture_output=True, text=True)
    assert result.returncode == 2


def test_a_file_outside_the_distributions_record_is_refused(tmp_path):
    site = fake_distribution(tmp_path / "site", "pkg", "1.0", {"pkg/other.py": ""})
    (site / "pkg/mod.py").write_text("first = 1\nsecond = 2\n")
    result = run_applier("apply", manifest_of(tmp_path / "m.manifest", {"name": "p", "text": GOOD_DIFF}), site)
    assert result.returncode == 1
    assert "not a file of pkg 1.0 (its RECORD does not list it)" in result.stderr


def test_a_patch_needing_a_skipped_optional_patch_is_skipped_or_refused(tmp_path):
    site = fake_distribution(tmp_path / "site", "pkg", "1.0", {"pkg/mod.py": "first = 1\nsecond = 2\n"})
    first = {"name": "first", "text": GOOD_DIFF, "specifier": "==2.0", "optional": True}
    second = {"name": "second", "text": GOOD_DIFF, "depends": ["first"]}
    result = run_applier("apply", manifest_of(tmp_path / "m.manifest", first, dict(second, optional=True)), site)
    assert result.returncode == 0, result.stderr
    assert "first: skipped (optional): wants pkg ==2.0, found pkg 1.0" in result.stdout
    assert "second: skipped (optional): needs patch first, which is version-mismatch" in result.stdout
    result = run_applier("apply", manifest_of(tmp_path / "m.manifest", first, second), site)
    assert result.returncode == 1
    assert "second: error: needs patch first, which is version-mismatch" in result.stderr
    assert (site / "pkg/mod.py").read_text() == "first = 1\nsecond = 2\n"


ANCHOR = "                self.create_backend(bknd, init)\n"


@pytest.fixture
def rixl_site(tmp_path):
    return fake_distribution(tmp_path / "site", "rixl", "0.1.0", {"rixl/__init__.py": "", "rixl/_api.py": RIXL_API})


@pytest.fixture
def rixl_manifest(tmp_path, catalog):
    return write_manifest(tmp_path / "rixl.manifest", [catalog["rixl-ucx-error-mode"]])


def test_rixl_insertion_goes_before_the_anchor_and_takes_effect(rixl_site, rixl_manifest):
    assert RIXL_API.count(ANCHOR) == 1
    result = run_applier("apply", rixl_manifest, rixl_site)
    assert result.returncode == 0, result.stderr
    assert "rixl-ucx-error-mode: applied to rixl 0.1.0 (rixl/_api.py)" in result.stdout
    patched = (rixl_site / "rixl/_api.py").read_text()
    assert patched == RIXL_API.replace(ANCHOR, '                init["ucx_error_handling_mode"] = "none"\n' + ANCHOR)
    namespace: dict = {}
    exec(compile(patched, "rixl/_api.py", "exec"), namespace)
    agent = namespace["nixl_agent"]("a", namespace["nixl_agent_config"](backends=["UCX"], num_threads=4))
    assert agent.backends == {"UCX": {"num_threads": "4", "ucx_error_handling_mode": "none"}}


def test_rixl_insertion_is_idempotent(rixl_site, rixl_manifest):
    assert run_applier("apply", rixl_manifest, rixl_site).returncode == 0
    once = snapshot(rixl_site)
    result = run_applier("apply", rixl_manifest, rixl_site)
    assert result.returncode == 0
    assert "rixl-ucx-error-mode: already applied" in result.stdout
    assert snapshot(rixl_site) == once


@pytest.mark.parametrize("source, message", [
    (RIXL_API.replace(ANCHOR, "                self.create_backend(bknd, dict(init))\n"),
     "anchor line 'self.create_backend(bknd, init)' not found"),
    (RIXL_API.replace(ANCHOR, ANCHOR + ANCHOR),
     "anchor line 'self.create_backend(bknd, init)' is not unique: found at lines 29, 30"),
])
def test_rixl_insertion_refuses_a_missing_or_repeated_anchor(rixl_site, rixl_manifest, source, message):
    (rixl_site / "rixl/_api.py").write_text(source)
    before = snapshot(rixl_site)
    result = run_applier("apply", rixl_manifest, rixl_site)
    assert result.returncode == 1
    assert f"rixl-ucx-error-mode: error: does not apply to rixl/_api.py: {message}" in result.stderr
    assert "nothing was changed" in result.stderr
    assert snapshot(rixl_site) == before


