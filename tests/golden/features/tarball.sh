# ---- component tarball: A download with its sha256. ----
_eb_component tarball \
  hash=33c01ace3de9c47f9b64d7c7d8f5fb68b9204664000974c3cc90ac02abb3c58b \
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
