# ---- component git-branch: A git source given by branch only (unpinned without a lock). ----
_eb_component git-branch \
  hash=77bbdf4371578861e87b83ec3d870f9e150038b0207aae562f1dcc9410f5446e \
  gpu_target=gfx950 \
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
