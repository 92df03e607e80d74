# ---- component libionic: libionic1, the userspace verbs provider for Pensando (AMD AINIC) ionic NICs. ----
_eb_component libionic ddbdc4251d5aae476204fd6969a4eeb5a7557d262b4d46a118dd9a421cec5d0f '' '' '' 0 '' '' '' 0
_EB_SOURCE[libionic]='https://repo.radeon.com/amdainic/pensando/ubuntu/1.117.5/pool/main/r/rdma-core/libionic1_54.0-149.g3304be71_amd64.deb#sha256=unknown'
_eb_step_libionic() {
  _eb_download https://repo.radeon.com/amdainic/pensando/ubuntu/1.117.5/pool/main/r/rdma-core/libionic1_54.0-149.g3304be71_amd64.deb unknown libionic1_54.0-149.g3304be71_amd64.deb
dpkg -i "$EB_DOWNLOAD"
}
_eb_check_libionic() {
  _eb_deb_installed libionic1 54.0-149.g3304be71
}
_eb_env_libionic() {
  :
}
