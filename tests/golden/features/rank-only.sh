# ---- component rank-only: Only on the first two nodes. ----
_eb_component rank-only \
  hash=6a02aa0fa9ebbcd7e26aa7276dd25a26dc31daa2fc71428e7c0081776288a30d \
  condition='NODE_RANK in 0,1' \
  node_ranks='0 1' \
  gpu_target=gfx950
_eb_step_rank_only() {
echo rank
}
_eb_check_rank_only() {
  :
}
_eb_env_rank_only() {
  :
}
