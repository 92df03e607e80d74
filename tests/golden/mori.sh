# ---- component mori: MoRI, AMD's MoE all-to-all and KV-transfer library, at b645fc8. ----
_eb_component mori 5798a32d54431551e4578c93b3a28f28c3bedd2b2047c4ca63e21c9e87d0ea66 libionic '' '' 1 '' '' '' 1
_EB_SOURCE[mori]=https://github.com/ROCm/mori.git@b645fc8bbc62287e2b939be1558deb16692385f1
_eb_step_mori() {
  _eb_apt libopenmpi-dev openmpi-bin libpci-dev cmake
  _eb_git https://github.com/ROCm/mori.git b645fc8bbc62287e2b939be1558deb16692385f1 0 mori-da9c907e1092
unset USE_IONIC USE_BNXT
case $EB_NIC_FAMILY in
  ionic) export USE_IONIC=ON ;;
  bnxt) export USE_BNXT=ON ;;
  mlx5 | none) ;;
esac
echo "building MoRI for NIC family ${EB_NIC_FAMILY}"
_eb_pip --force-reinstall .
}
_eb_check_mori() {
"$EB_PYTHON" -c 'import mori'
}
_eb_env_mori() {
  :
}
