# ---- component tarball-unverified: A download whose sha256 is not known yet. ----
_eb_component tarball-unverified \
  hash=8723681fd2205a9fdeaf561c71bf43dd4e50f4ebfc55f24a8f2bf73997b45173 \
  gpu_target=gfx950 \
  source='https://downloads.example.invalid/other-2.0.tar.gz#sha256=unknown'
_eb_step_tarball_unverified() {
  _eb_download https://downloads.example.invalid/other-2.0.tar.gz unknown other-2.0.tar.gz
tar -xzf "$EB_DOWNLOAD"
}
_eb_check_tarball_unverified() {
  :
}
_eb_env_tarball_unverified() {
  :
}
