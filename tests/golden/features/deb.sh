# ---- component deb: A .deb, checked by dpkg by default. ----
_eb_component deb \
  hash=9464983864e27f8b9c12883b6c82a5a4de03be9b91582edefe11cb35b727d7e0 \
  gpu_target=gfx950 \
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
