# ---- component git-pinned: A git source at a pinned commit, built with make. ----
_eb_component git-pinned \
  hash=7bc67a4b7cfdaf1ae9b42187d81d2c497b559c5c2f003303273908ca7a4c8bed \
  gpu_target=gfx950 \
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
