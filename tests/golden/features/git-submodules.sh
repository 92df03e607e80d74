# ---- component git-submodules: A git source whose submodules are checked out too. ----
_eb_component git-submodules \
  hash=2ee248d4deff1a300d6df177caf678235eb61eb2df971ac51414da03c0f71c21 \
  gpu_target=gfx950 \
  source=https://git.example.invalid/sub.git@b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2
_eb_step_git_submodules() {
  _eb_git https://git.example.invalid/sub.git b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2 1 sub-b4f38d5af5bf
./install.sh
}
_eb_check_git_submodules() {
  :
}
_eb_env_git_submodules() {
  :
}
