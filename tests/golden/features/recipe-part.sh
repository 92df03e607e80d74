# ---- recipe features ----
_EB_RECIPE=features
_EB_RECIPE_HASH=c31fbbb3fb483a78cce588f665f3c55ce24b7aa9e42e1c3f960a14265cdbd947
_EB_PROFILE=lab
_EB_PROFILE_NIC=mlx5
_EB_PROFILE_JSON='{"dscp": 26, "name": "lab", "nic_family": "mlx5", "rail_count": 2}'
_EB_BASE_IMAGE=debian:bookworm
_eb_recipe_env() {
  _eb_set FEATURE_RECIPE_VALUE 'a value with '"'"'quotes'"'"'; and `backticks`'
}
# Build settings: the steps see them unless the environment sets them already.
_eb_build_env() {
  [[ -n ${PIP_INDEX_URL+set} ]] || PIP_INDEX_URL=http://mirror.example.invalid/simple
  export PIP_INDEX_URL
  [[ -n ${HTTPS_PROXY+set} ]] || HTTPS_PROXY='http://proxy.example.invalid:3128; $(not a command)'
  export HTTPS_PROXY
}
