# ---- component tarball-unverified: A download whose sha256 is not known yet. ----
_eb_component tarball-unverified \
  hash=20bef01624e115771af6d06a2a410a8c171be44661a8c4a26ae8ba025d6079a9 \
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
