"""`envbuild image --push` and `envbuild inspect REGISTRY/NAME:TAG` against a real registry on 127.0.0.1.

The registry is Debian's docker-registry, started by scripts/ensure-registry
(the engine speaks plain HTTP to registries on 127.0.0.0/8). The image is the
test recipe of test_image.py, built by the CLI: pushed under two tags, removed
from the engine, pulled back by digest, and checked like the original.
"""

from __future__ import annotations

import contextlib
import json
import re

import pytest

from docker_base import registry_or_skip
from envbuild.render.dockerfile import image_labels
from test_image import envbuild_cli, image_args, image_plan, run_in, sources  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def registry(engine):
    return registry_or_skip()


@pytest.mark.docker
def test_push_every_tag_then_pull_by_digest_and_inspect_the_registry(engine, session, base_image, sources, registry):
    repository = f"{registry}/{session.tag_prefix}/testrecipe"
    tags = [f"{repository}:a", f"{repository}:b"]
    plan = image_plan(sources, base_image)
    before = {image.id for image in engine.images.list(all=True)}
    try:
        result = envbuild_cli(*image_args(sources, base_image, "-t", tags[0], "-t", tags[1], "--push"))
    finally:
        session.adopt_new_images(engine, before)
    try:
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        lines = result.stdout.splitlines()
        assert [line.split("@")[0] for line in lines] == tags
        digests = {line.split("@")[1] for line in lines}
        assert len(digests) == 1 and re.fullmatch(r"sha256:[0-9a-f]{64}", digest := digests.pop())
        for tag in tags:
            assert re.search(rf"^envbuild: pushed {re.escape(tag)} \({digest}\) in [\d.]+ s$", result.stderr, re.M)
        # Not a terminal: a line per layer once it is in the registry.
        assert re.search(rf"^{re.escape(tags[0])}: layer [0-9a-f]{{12}} pushed \([\d.]+ (B|kB|MB)\)$", result.stderr, re.M)
        image_id = engine.api.inspect_image(tags[0])["Id"]

        inspected = envbuild_cli("inspect", tags[1], "--format", "json")
        assert inspected.returncode == 0, inspected.stderr
        doc = json.loads(inspected.stdout)
        assert (doc["kind"], doc["origin"], doc["recipe"], doc["recipe_hash"]) == (
            "image", tags[1], "testrecipe", plan.hash)
        assert [c["name"] for c in doc["components"]] == [s.name for s in plan.steps]

        for tag in tags:
            engine.api.remove_image(tag)
        assert engine.images.list(name=repository) == []
        engine.api.pull(f"{repository}@{digest}")
        # The same config, so the same image ID: labels and all.
        pulled = engine.api.inspect_image(f"{repository}@{digest}")
        assert pulled["Id"] == image_id
        labels = pulled["Config"]["Labels"]
        assert {key: labels[key] for key in image_labels(plan)} == image_labels(plan)
        code, out, err = run_in(engine, session, f"{repository}@{digest}",
                                "bash /opt/envbuild/setup_deps.sh && cat /var/tmp/envbuild-test-builds.log")
        assert code == 0, err
        assert out.splitlines()[0].startswith(f"envbuild: all {len(plan.steps)} components present (")
        assert out.splitlines()[1:] == ["greet"]  # the one step run in the image itself, at build time
    finally:
        for reference in (*tags, f"{repository}@{digest}" if "digest" in locals() else None):
            with contextlib.suppress(Exception):
                if reference:
                    engine.api.remove_image(reference)


def test_a_bad_tag_is_one_line_before_anything_is_built(sources):
    result = envbuild_cli(*image_args(sources, "envbuild-test/base:any", "-t", "good/name:1", "-t", "Bad/Name:1"),
                          env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.returncode == 2
    assert result.stderr == ("envbuild: error: invalid image reference 'Bad/Name:1': "
                             "uppercase letters are not allowed in a repository name\n")


@pytest.mark.docker
def test_inspect_of_what_the_registry_does_not_hold_is_one_line(registry, session):
    missing = f"{registry}/{session.tag_prefix}/absent:1"
    result = envbuild_cli("inspect", missing)
    assert result.returncode == 1
    assert result.stderr == f"envbuild: error: {missing} is not in its registry {registry} (404 on manifests)\n"
    unreachable = envbuild_cli("inspect", "127.0.0.1:1/absent:1")
    assert unreachable.returncode == 1
    assert re.fullmatch(r"envbuild: error: cannot reach the registry 127\.0\.0\.1:1 for 127\.0\.0\.1:1/absent:1: .+\n",
                        unreachable.stderr)
