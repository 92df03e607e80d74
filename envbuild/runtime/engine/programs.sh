# ---- embedded programs (envbuild's own, standard library only) ----

# Prints the node's RDMA NIC settings; the detector is envbuild's own nic.py.
_eb_nic_detect() {
  local profile=()
  [[ -z $_EB_PROFILE_JSON ]] || profile=(--profile-json "$_EB_PROFILE_JSON")
  # -S: no site module, so no site-packages .pth files run (tens of ms in a
  # full Python environment); the detector needs the standard library only.
  "${ENVBUILD_PYTHON:-python3}" -I -S - "${profile[@]}" "$@" <<'_EB_NIC_DETECT_PY_'
@NIC_DETECTOR@_EB_NIC_DETECT_PY_
}

# Runs the patch applier (envbuild's patchapply.py): `_eb_patch apply|verify MANIFEST`.
_eb_patch() {
  "${EB_PYTHON:-python3}" -I - "$1" --manifest "$2" <<'_EB_PATCH_APPLY_PY_'
@PATCH_APPLIER@_EB_PATCH_APPLY_PY_
}

# Runs the pip guard (envbuild's pipguard.py): `_eb_pipguard constraints NAME...`,
# `_eb_pipguard replaced CONSTRAINTS REPORT` or `_eb_pipguard expect NAME==VERSION...`.
_eb_pipguard() {
  "${EB_PYTHON:-python3}" - "$@" <<'_EB_PIPGUARD_PY_'
@PIP_GUARD@_EB_PIPGUARD_PY_
}
