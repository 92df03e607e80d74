# ---- recipe features ----
_EB_RECIPE=features
_EB_RECIPE_HASH=bd49a2f0f6689552a03910f64eda871c13be9cb5d9468e63c6340d1074c069d9
_EB_PROFILE=lab
_EB_PROFILE_NIC=mlx5
_EB_PROFILE_JSON='{"dscp": 26, "name": "lab", "nic_family": "mlx5", "rail_count": 2}'
_EB_BASE_IMAGE=debian:bookworm
_eb_recipe_env() {
  _eb_set FEATURE_RECIPE_VALUE 'a value with '"'"'quotes'"'"'; and `backticks`'
}
