"""Invalid recipes: every problem names file, line and key; exit 2; no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from envbuild.errors import RecipeError
from envbuild.spec.loader import Library
from envbuild.spec.model import PipGroup
from envbuild.pipeline import load_plan

INVALID = Path(__file__).parent / "invalid"
CASES = sorted(p.name for p in INVALID.iterdir() if p.is_dir())


def run_envbuild(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "envbuild", *args], cwd=cwd, capture_output=True, text=True)


def test_corpus_is_large_enough():
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", CASES)
def test_invalid_recipe_is_refused_with_its_expected_error(case):
    result = run_envbuild("validate", "r", "--recipes-dir", "recipes", cwd=INVALID / case)
    expected = (INVALID / case / "expected.txt").read_text()
    assert result.returncode == 2
    assert result.stderr == expected
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("command", [["plan", "--recipe", "r"], ["runtime-script", "--recipe", "r"]])
def test_every_command_validates_first(command):
    result = run_envbuild(*command, "--recipes-dir", "recipes", cwd=INVALID / "dependency-cycle")
    assert result.returncode == 2
    assert result.stderr == (INVALID / "dependency-cycle" / "expected.txt").read_text()
    assert result.stdout == ""


def test_builtin_recipes_are_valid():
    library = Library()
    assert library.recipe_names() == ["mi355x-moriio", "mi355x-nixl"]
    for name in library.recipe_names():
        load_plan(library.root, name)


def test_validate_accepts_a_recipe_file_path(tmp_path):
    recipe = Path(__file__).parent.parent / "recipes" / "mi355x-moriio.yaml"
    result = run_envbuild("validate", str(recipe), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("mi355x-moriio: ok (7 components, hash ")


def test_unknown_recipe_lists_the_known_ones(tmp_path):
    result = run_envbuild("plan", "--recipe", "mi999", cwd=tmp_path)
    assert result.returncode == 2
    assert "no recipe named 'mi999' (known recipes: mi355x-moriio, mi355x-nixl)" in result.stderr


def test_problems_of_one_file_are_all_reported(tmp_path):
    components = tmp_path / "components"
    components.mkdir()
    (components / "a.yaml").write_text("name: a\nsource:\n  git: nope\n  commit: abc\nwhen:\n  nic: ib\n")
    with pytest.raises(RecipeError) as info:
        Library(tmp_path).component("a")
    assert [(p.line, p.key) for p in info.value.problems] == [
        (1, "description"), (3, "source.git"), (4, "source.commit"), (6, "when.nic"),
    ]


def test_validate_a_directory_reports_every_file_even_unused_ones(tmp_path):
    (tmp_path / "components").mkdir()
    (tmp_path / "clusters").mkdir()
    (tmp_path / "r.yaml").write_text("name: r\ndescription: R.\nbase_image: debian:bookworm\ncomponents:\n  - a\n")
    (tmp_path / "components" / "a.yaml").write_text("name: a\ndescription: A.\n")
    (tmp_path / "components" / "orphan.yaml").write_text("name: orphan\ndescription: O.\nbulid: make\n")
    (tmp_path / "clusters" / "c.yaml").write_text("name: c\ndescription: C.\nqos:\n  dscp: 99\n")
    result = run_envbuild("validate", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout.startswith("r: ok (1 component, hash ")
    assert result.stderr.splitlines() == [
        "components/orphan.yaml:3: bulid: unknown key; allowed keys: apt, build, check, depends, "
        "description, env, name, needs, nic_specific, notes, patches, pip, prefix, source, when",
        "clusters/c.yaml:4: qos.dscp: must be from 0 to 63, not 99",
    ]


def test_pip_options_may_give_a_value_as_the_next_item(tmp_path):
    """[--index-url, URL] as pip takes it on its command line, besides --index-url=URL."""
    from envbuild.render.script import render_fragment

    (tmp_path / "components").mkdir()
    (tmp_path / "components" / "a.yaml").write_text(
        "name: a\ndescription: A.\npip:\n  - requirements: [quart]\n"
        "    options: [--index-url, 'http://127.0.0.1:8080/simple', --no-deps, --extra-index-url=http://x/simple]\n")
    (tmp_path / "r.yaml").write_text("name: r\ndescription: R.\nbase_image: debian:bookworm\ncomponents: [a]\n")
    plan = load_plan(tmp_path, "r")
    # The index options first, counted: an install from offline sources leaves them out.
    assert ("  _eb_pip_indexed 3 --index-url http://127.0.0.1:8080/simple --extra-index-url=http://x/simple --no-deps "
            "quart\n" in render_fragment(plan, plan.step("a")))
    (tmp_path / "components" / "a.yaml").write_text(
        "name: a\ndescription: A.\npip:\n  - requirements: [quart]\n    options: ['http://x/simple', --index-url]\n")
    result = run_envbuild("validate", "--recipes-dir", str(tmp_path), "r", cwd=tmp_path)
    assert result.returncode == 2
    assert "components/a.yaml:5: pip[0].options[0]: 'http://x/simple' is neither a pip option (--name or " \
           "--name=value) nor the value of the option before it, as in [--index-url, URL]" in result.stderr


@pytest.mark.parametrize("name, user", [
    ("PATH", "the shell"), ("HOME", "the shell"), ("IFS", "the shell"), ("SHELL", "the shell"),
    ("TMPDIR", "the shell"), ("BASH_ENV", "the shell"), ("LD_PRELOAD", "the dynamic loader"),
    ("LD_LIBRARY_PATH", "the dynamic loader"), ("PYTHONPATH", "Python and pip"),
    ("ENVBUILD_STATE_DIR", "envbuild itself"), ("ENVBUILD_ANYTHING", "envbuild itself"),
    ("EB_PYTHON", "envbuild itself"), ("_EB_WORK", "envbuild itself"),
])
def test_a_prefix_may_not_take_a_variable_the_shell_the_loader_or_envbuild_uses(tmp_path, name, user):
    (tmp_path / "components").mkdir()
    (tmp_path / "components" / "a.yaml").write_text(f"name: a\ndescription: A.\nprefix:\n  A_HOME: /opt/a\n"
                                                    f"  {name}: /opt/x\n")
    with pytest.raises(RecipeError) as info:
        Library(tmp_path).component("a")
    assert [str(p) for p in info.value.problems] == [
        f"{tmp_path}/components/a.yaml:5: prefix.{name}: {name} is used by {user}; a prefix may not take it (the "
        "script takes a prefix from the environment when set there and exports it to the steps): name it after the "
        "component, as UCX_HOME"]


def test_the_component_schema_refuses_reserved_prefix_names_too():
    """Editors check with the JSON Schema: it refuses what validation refuses."""
    import jsonschema

    from envbuild.spec.model import COMPONENT
    from envbuild.spec.schema import RESERVED_VARIABLES, document

    validator = jsonschema.Draft202012Validator(document("component", COMPONENT))
    for name in ("HOME", "LD_PRELOAD", "PYTHONPATH", "ENVBUILD_STATE_DIR", "EB_X", "_EB_X", "BASH_ENV"):
        assert not validator.is_valid({"name": "a", "description": "A.", "prefix": {name: "/opt/x"}}), name
    for name in ("UCX_HOME", "HOMEBREW_HOME", "EBX_HOME", "MY_PATH"):
        assert validator.is_valid({"name": "a", "description": "A.", "prefix": {name: "/opt/x"}}), name
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for _, names, beginnings in RESERVED_VARIABLES:
        for word in (*names, *(f"{beginning}*" for beginning in beginnings)):
            assert f"`{word}`" in readme, word


def test_the_component_schema_refuses_the_prefixes_validation_refuses():
    """Editors check with the JSON Schema: it refuses what validation refuses (prefix_problem), repeated
    and trailing slashes or not."""
    import jsonschema

    from envbuild.spec.model import COMPONENT
    from envbuild.spec.schema import SYSTEM_DIRECTORIES, document, prefix_problem

    validator = jsonschema.Draft202012Validator(document("component", COMPONENT))
    refused = [*SYSTEM_DIRECTORIES, "//usr/", "/usr//local/bin/", "/var/lib/envbuild", "/var/lib/envbuild/",
               "/var/lib//envbuild/a", "/opt/../usr", "/opt/./a", "/opt/a/."]
    accepted = ["/opt/rocm", "/usr/local/ucx", "/usr/local/bin/ucx", "/var/lib/envbuilder", "/opt/.a/..b",
                "/root/opt/a", "/tmpdir"]
    for path in refused + accepted:
        component = {"name": "a", "description": "A.", "prefix": {"A_HOME": path}}
        assert validator.is_valid(component) == (prefix_problem(path) is None) == (path in accepted), path


def test_a_prefix_that_holds_a_system_directory_or_the_state_dir_is_a_system_directory():
    """prefix_problem and the script's _eb_check_prefix need no rule for a prefix holding one: the
    parent of each system directory is one, and so is each parent of the default state dir."""
    from envbuild.formats import STATE_DIR_DEFAULT
    from envbuild.spec.schema import SYSTEM_DIRECTORIES

    assert len(set(SYSTEM_DIRECTORIES)) == len(SYSTEM_DIRECTORIES)
    for path in SYSTEM_DIRECTORIES:
        assert str(Path(path).parent) in SYSTEM_DIRECTORIES, path
    assert {str(parent) for parent in Path(STATE_DIR_DEFAULT).parents} <= set(SYSTEM_DIRECTORIES)


def test_the_readme_component_example_is_valid_with_either_form_of_pip(tmp_path):
    """The Recipes section's example, as written and with the pip groups its comment shows."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme.split("Adding a component takes one YAML file:\n\n```yaml\n", 1)[1].split("```", 1)[0]
    line = next(line for line in example.splitlines() if line.startswith("pip:"))
    groups = line.split("# or a list of groups: ", 1)[1].replace(", ...]", "]")
    (tmp_path / "components").mkdir()
    for pip, expected in ((line, (PipGroup(("meson",)),)), (f"pip: {groups}", (PipGroup(("meson",), ("--no-deps",)),))):
        (tmp_path / "components" / "ucx.yaml").write_text(example.replace(line, pip))
        assert Library(tmp_path).component("ucx").pip == expected
