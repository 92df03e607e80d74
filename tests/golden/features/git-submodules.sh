# ---- component git-submodules: A git source whose submodules are checked out too. ----
_eb_component git-submodules \
  hash=ece7cc0ab05237e99c09c622c464b6e0c91212472999e164f4dde124dd85666c \
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
