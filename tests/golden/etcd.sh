# ---- component etcd: etcd v3.6.0-rc.5 release binaries. ----
_eb_component etcd f86fe7b1126db0c040a09620fd6a81ab2096ac8a1a92ab8dc89474d2dc9e6308 '' '' '' 0 ETCD_HOME etcd ETCD_HOME 0
_EB_SOURCE[etcd]='https://github.com/etcd-io/etcd/releases/download/v3.6.0-rc.5/etcd-v3.6.0-rc.5-linux-amd64.tar.gz#sha256=unknown'
_eb_prefix ETCD_HOME /usr/local/bin/etcd
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
