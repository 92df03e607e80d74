# ---- component patched: Applies a patch and its dependency. ----
_eb_component patched \
  hash=88dc81cc97bfc20c24d37d550841f316d74b7e27d6b5f2be8bd41b0b30785ef7 \
  gpu_target=gfx950 \
  patches=first=ecff26122d82b88e1d1666384a99cbfd9ea5d96f3446706e670ebe971ef72a6f,second=aa1347b4debb33a0a0c2ae6bed4b376cc7d3908664f67d61553b37d90c51c592
_eb_step_patched() {
  _eb_patch apply <(_eb_manifest_patched)
}
_eb_check_patched() {
  _eb_patch verify <(_eb_manifest_patched)
}
# The patches, verbatim, each after a line of its metadata.
_eb_manifest_patched() {
  cat <<'_EB_MANIFEST_'
#%envbuild-patch {"depends": [], "dist": "pkg", "kind": "diff", "name": "first", "optional": false, "specifier": "==1.0"}
--- a/pkg/mod.py
+++ b/pkg/mod.py
@@ -1,2 +1,2 @@
 first = 1
-second = 2
+second = 3
#%envbuild-patch {"depends": ["first"], "dist": "pkg", "kind": "diff", "name": "second", "optional": true, "specifier": "==1.0.*"}
--- a/pkg/mod.py
+++ b/pkg/mod.py
@@ -1,2 +1,2 @@
-first = 1
+first = "it's $HOME"
 second = 3
_EB_MANIFEST_
}
_eb_env_patched() {
  :
}
