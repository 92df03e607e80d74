# ---- recipe features ----
_EB_RECIPE=features
_EB_RECIPE_HASH=86b216d05523705b105d89342c541a8e126191abb1006a6ba1241d529f616bdd
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
