# ---- component git-pinned: A git source at a pinned commit, built with make. ----
_eb_component git-pinned \
  hash=1f9274df68087992c78ac8b2e2d6d94a957d03bf414381ed58b5d554c89299ab \
  source=https://git.example.invalid/pinned.git@a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1
_eb_step_git_pinned() {
  _eb_git https://git.example.invalid/pinned.git a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1 0 pinned-4ed10367f460
make -j"$EB_JOBS" install
}
_eb_check_git_pinned() {
test -e /opt/pinned
}
_eb_env_git_pinned() {
  :
}
