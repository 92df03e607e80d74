# ---- component tarball: A download with its sha256. ----
_eb_component tarball \
  hash=b6e3afbd76e4fc0b54de6f4c05a8c54c8314b9fda6ff4998022097a854a359ec \
  gpu_target=gfx950 \
  source='https://downloads.example.invalid/tool-1.0.tar.gz#sha256=c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3'
_eb_step_tarball() {
  _eb_download https://downloads.example.invalid/tool-1.0.tar.gz c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3 tool-1.0.tar.gz
tar -xzf "$EB_DOWNLOAD"
}
_eb_check_tarball() {
  :
}
_eb_env_tarball() {
  :
}
