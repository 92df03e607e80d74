# ---- component rank-only: Only on the first two nodes. ----
_eb_component rank-only \
  hash=5375ea0fed77a5a333a69d50780b20f977b85b2e454418314466dfb4d8aed947 \
  condition='NODE_RANK in 0,1' \
  node_ranks='0 1'
_eb_step_rank_only() {
echo rank
}
_eb_check_rank_only() {
  :
}
_eb_env_rank_only() {
  :
}
