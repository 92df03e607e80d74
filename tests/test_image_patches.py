"""The image applies the same patches as the runtime script, through the same step:
an image whose base holds vLLM 0.17.1's real files ends up byte-identical to a
tree the runtime script patched, and the script inside it finds nothing to do."""

from __future__ import annotations

import pytest

from envbuild.run.docker_engine import build, make_context_tar
from envbuild.pipeline import load_plan
from test_image import build_plan, run_in
from test_patch_step import PATCHED_FILES, Node

SITE_IN_IMAGE = "/usr/local/lib/python3.11/dist-packages"


@pytest.mark.docker
def test_image_patch_layer_matches_the_runtime_script(engine, base_image, session, tmp_path):
    node = Node(tmp_path)
    # A base image holding the unpatched files where Debian's python3 finds them.
    files = {f"site/{path.relative_to(node.site)}": (path.read_bytes(), 0o644)
             for path in sorted(node.site.rglob("*")) if path.is_file()}
    files["Dockerfile"] = (f"FROM {base_image}\nCOPY site/ {SITE_IN_IMAGE}/\n".encode(), 0o644)
    vllm_base = session.tag("vllm-base")
    build(engine, make_context_tar(files), vllm_base, labels=session.labels)

    local = node.run()
    assert local.returncode == 0, local.stderr
    plan = load_plan(node.root / "recipes", "patched", base_image=vllm_base)
    built = build_plan(engine, session, plan, session.tag("patched"))
    assert built.component_steps(cached=False) == ["vllm-patches", "rixl-patch"]

    targets = " ".join(f"{SITE_IN_IMAGE}/{path}" for path in [*PATCHED_FILES, "rixl/_api.py"])
    code, out, err = run_in(engine, session, built.tag, f"""
sha256sum {targets}
bash /opt/envbuild/setup_deps.sh --check
python3 -m py_compile {targets} && echo compiled
""")
    assert code == 0, out + err
    digests = node.digest()
    for path in [*PATCHED_FILES, "rixl/_api.py"]:
        assert f"{digests[path]}  {SITE_IN_IMAGE}/{path}\n" in out
    assert "envbuild: all 2 components present" in out
    assert out.endswith("compiled\n")
