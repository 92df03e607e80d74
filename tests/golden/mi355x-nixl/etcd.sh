# ---- component etcd: etcd v3.6.0-rc.5 release binaries. ----
_eb_component etcd 76c32a5f9b729fe33cb0d8af13fed5d8805049dddfffeb5db82a99c046c8d3fd '' '' '' 0 ETCD_HOME etcd
_eb_step_etcd() {
  _eb_download https://github.com/etcd-io/etcd/releases/download/v3.6.0-rc.5/etcd-v3.6.0-rc.5-linux-amd64.tar.gz unknown etcd-v3.6.0-rc.5-linux-amd64.tar.gz
mkdir -p "$ETCD_HOME"
tar -xzf "$EB_DOWNLOAD" --strip-components=1 -C "$ETCD_HOME"
}
_eb_check_etcd() {
test -x "$ETCD_HOME/etcd"
"$ETCD_HOME/etcd" --version | grep -qx 'etcd Version: 3.6.0-rc.5'
}
_eb_env_etcd() {
  _eb_prepend PATH "${ETCD_HOME}"
}
