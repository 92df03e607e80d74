"""Build settings (a recipe's build_env, `image --build-env`/`--build-secret`): the steps of image
builds and of the runtime script see them; the image's ENV, labels, config and ID do not."""

from __future__ import annotations

import re

import pytest

from test_image import envbuild_cli, image_args, recipe_of, run_in, sources  # noqa: F401 (fixture)

PROBE = """name: probe
description: Records the build settings its step sees.
prefix:
  PROBE_HOME: {install_root}/opt/probe
build: |
  mkdir -p "$PROBE_HOME"
  echo "default=${{PROBE_DEFAULT:-unset}} given=${{PROBE_GIVEN:-unset}}" > "$PROBE_HOME/seen"
  echo "the secret is ${{PROBE_SECRET:-unset}}"
"""
# Prints what it sees and installs the same files whatever that is.
QUIET_PROBE = """name: quiet-probe
description: Sees a build setting, installs nothing that depends on it.
build: |
  echo "given=${{PROBE_GIVEN:-unset}}"
"""
BUILD_ENV = "build_env:\n  PROBE_DEFAULT: from-recipe\n  PROBE_GIVEN: recipe-value\n"
SECRET = "s3cret-7f2b"


def test_the_runtime_script_steps_see_the_recipe_build_env_unless_the_environment_sets_it(test_recipe):
    test_recipe.extra_components["probe"] = PROBE
    test_recipe.components[:] = ["probe"]
    test_recipe.recipe_extra = BUILD_ENV
    test_recipe.write()
    script = test_recipe.render()
    seen = test_recipe.root / "opt" / "probe" / "seen"

    first = test_recipe.run(script)
    assert first.returncode == 0, first.stderr
    assert seen.read_text() == "default=from-recipe given=recipe-value\n"
    again = test_recipe.run(script, "--force", "probe", PROBE_GIVEN="from-env")
    assert again.returncode == 0, again.stderr
    assert seen.read_text() == "default=from-recipe given=from-env\n"
    # Not part of what the script exports to the job.
    exported = test_recipe.run(script, "--env")
    assert "PROBE" not in exported.stdout


@pytest.mark.docker
def test_image_steps_see_the_settings_and_the_image_keeps_none(engine, session, base_image, sources):
    tag = session.tag("settings")
    before = {image.id for image in engine.images.list(all=True)}
    with recipe_of(sources, ["probe"], {"probe": PROBE}, BUILD_ENV):
        result = envbuild_cli(*image_args(sources, base_image, "-t", tag, "--verbose", "--build-env",
                                          "PROBE_GIVEN=from-cli", "--build-secret", "PROBE_SECRET"),
                              env={"PROBE_SECRET": SECRET})
    session.adopt_new_images(engine, before)
    assert result.returncode == 0, result.stderr
    assert "the secret is ***\n" in result.stderr
    assert SECRET not in result.stderr + result.stdout
    code, out, err = run_in(engine, session, tag, "cat /opt/probe/seen")
    assert (code, out) == (0, "default=from-recipe given=from-cli\n"), err

    config = engine.api.inspect_image(tag)["Config"]
    assert not [item for item in config["Env"] if item.startswith("PROBE_")]
    # The Dockerfile's ARG instructions name the settings; no value is anywhere in the config.
    history = " ".join(entry["CreatedBy"] for entry in engine.api.history(tag))
    assert "#(nop)  ARG PROBE_GIVEN" in history
    for where in (" ".join(config["Env"]), " ".join(config["Labels"].values()), history):
        assert not re.search(rf"from-cli|from-recipe|recipe-value|{SECRET}", where)


@pytest.mark.docker
def test_a_setting_changes_no_image_id(engine, session, base_image, sources):
    """Another value runs the step again (the layer cache keys on it) and gives the very same image."""
    ids, outputs = [], []
    before = {image.id for image in engine.images.list(all=True)}
    with recipe_of(sources, ["quiet-probe"], {"quiet-probe": QUIET_PROBE}):
        for value in ("a", "b"):
            tag = session.tag(f"quiet-{value}")
            result = envbuild_cli(*image_args(sources, base_image, "-t", tag, "--verbose",
                                              "--build-env", f"PROBE_GIVEN={value}"))
            assert result.returncode == 0, result.stderr
            outputs.append(result.stderr)
            ids.append(engine.api.inspect_image(tag)["Id"])
    session.adopt_new_images(engine, before)
    assert "given=a\n" in outputs[0] and "given=b\n" in outputs[1]
    assert ids[0] == ids[1]
