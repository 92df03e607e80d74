# ---- component deb: A .deb, checked by dpkg by default. ----
_eb_component deb \
  hash=c4f0156d58bf4c82b5804de44df2159100028dc27848e3e6e8e529faf8450e4e \
  source='https://downloads.example.invalid/pool/libthing1_1.2-3_amd64.deb#sha256=d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4'
_eb_step_deb() {
  _eb_download https://downloads.example.invalid/pool/libthing1_1.2-3_amd64.deb d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4 libthing1_1.2-3_amd64.deb
dpkg -i "$EB_DOWNLOAD"
}
_eb_check_deb() {
  _eb_deb_installed libthing1 1.2-3
}
_eb_env_deb() {
  :
}
