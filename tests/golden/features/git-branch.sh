# ---- component git-branch: A git source given by branch only (unpinned without a lock). ----
_eb_component git-branch \
  hash=23da172feed98b91ee50321aa241c505d5a2b9fcb82204c6a4de864c8a8487c8 \
  source='https://git.example.invalid/branch.git#branch=release/v1'
_eb_step_git_branch() {
  _eb_git https://git.example.invalid/branch.git '' 0 branch-5ef9d4e38dff release/v1
./install.sh
}
_eb_check_git_branch() {
  :
}
_eb_env_git_branch() {
  :
}
