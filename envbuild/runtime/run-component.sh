#!/usr/bin/env bash
# Installs during an image build, with the same engine and the same component
# text as setup_deps.sh, so the stamps it writes are the ones the runtime
# script looks for.
#
#   run-component.sh NAME           installs component NAME in place
#   run-component.sh --stage NAME   installs NAME, then moves what it installed
#                                   (own prefixes, stamp, provenance, fragment)
#                                   under /envbuild-out for the image to copy in;
#                                   fails if the step wrote anywhere else (with
#                                   ENVBUILD_NIC_FAMILY: that family's build)
#   run-component.sh --apt PKG...   installs the apt packages of every component
#
# Layers are reproducible: the steps see SOURCE_DATE_EPOCH (Python's .pyc files,
# wheels and the provenance record use it instead of the time), every file the
# step wrote gets it as its time, and logs, lock notes, apt lists and download
# caches never stay (the builder's output carries the logs).
set -euo pipefail
# The builder shows both streams as one log; one pipe keeps their order.
exec 2>&1
export ENVBUILD_STEP_OUTPUT=stream SOURCE_DATE_EPOCH=@IMAGE_EPOCH@ PIP_NO_CACHE_DIR=1
out=/envbuild-out
# A fixed name: paths under it can end up in files (pip's direct_url.json).
scratch=/tmp/envbuild-image
rm -rf "$scratch"
mkdir -p "$scratch"
# apt's lists, archives and logs go to the scratch directory; dpkg logs nowhere.
export APT_CONFIG=$scratch/apt.conf
printf '%s\n' "Dir::State::Lists \"$scratch/lists\";" "Dir::Cache \"$scratch/cache\";" \
  "Dir::Log \"$scratch/log\";" 'DPkg::Options { "--log=/dev/null"; };' >"$APT_CONFIG"
mkdir -p "$scratch/lists/partial" "$scratch/cache/archives/partial" "$scratch/log"
# Outside every layer (a tmpfs): what is newer than it, this step wrote.
marker=$(mktemp /dev/shm/envbuild-marker.XXXXXX)
# Caches whose bytes depend on when and where they were written (ldconfig's
# records the inodes and times of the libraries): after the step, each is as before it.
volatile=(/var/cache/ldconfig/aux-cache)
for path in "${volatile[@]}"; do
  [[ ! -e $path ]] || cp -a "$path" "$scratch/volatile${path//\//_}"
done

# shellcheck source=/dev/null
source /opt/envbuild/lib/engine.sh
for fragment in /opt/envbuild/lib/components/*.sh; do
  # shellcheck source=/dev/null
  [[ ! -e $fragment ]] || source "$fragment"
done
_eb_prefix_defaults
# Work directories without the pid in their names (pip records the path it installed from).
_EB_WORK_STEM=$scratch/work
# What the base image holds under a prefix is the recipe's to replace: the layer
# written over it changes no one's files.
_EB_REPLACE_UNSTAMPED=1

# Prints, NUL-separated, what this step wrote under the given roots, other filesystems left out.
written() {
  find "$@" -xdev \( -path /proc -o -path /sys -o -path /dev \) -prune -o -newer "$marker" -print0
}

# Gives what this step wrote under the given roots the time SOURCE_DATE_EPOCH.
settle() {
  written "$@" | xargs -0 -r touch -h -d "@$SOURCE_DATE_EPOCH" --
}

# Moves path $1 to the same path under $out; the directories made on the way
# take the owner and mode of the ones they stand for.
export_path() {
  local path=$1 dir
  mkdir -p "$out${path%/*}"
  mv -T "$path" "$out$path"
  dir=${path%/*}
  while [[ -n $dir ]]; do
    chown --reference="$dir" "$out$dir"
    chmod --reference="$dir" "$out$dir"
    dir=${dir%/*}
  done
}

# Moves component $1's outputs under $out, after checking the step wrote nothing else.
export_component() {
  local name=$1 var path stray=() keep=("$_EB_STATE" /tmp /var/tmp "${HOME:-/root}/.cache" "$out")
  for var in ${_EB_OWNPREFIXES[$name]}; do
    keep+=("${!var}")
  done
  keep+=(/opt/envbuild/lib/components)
  while IFS= read -r -d '' path; do
    [[ ! -d $path || -L $path ]] || continue
    for var in "${keep[@]}"; do
      [[ $path != "$var" && $path != "$var"/* ]] || continue 2
    done
    stray+=("$path")
  done < <(written /)
  if ((${#stray[@]})); then
    _eb_die "$name wrote outside its prefixes (${_EB_OWNPREFIXES[$name]}): ${stray[*]:0:5}; an image builds it in a stage of its own, from which only its prefixes reach the image"
  fi
  for var in ${_EB_OWNPREFIXES[$name]}; do
    [[ ! -e ${!var} ]] || export_path "${!var}"
  done
  # Named by the unit: a NIC-specific component's build for one family (_eb_key).
  _eb_key "$name"
  export_path "$_EB_STATE/stamps/$_EB_UNIT"
  export_path "$_EB_STATE/provenance/$_EB_UNIT"
  for path in /opt/envbuild/lib/components/[0-9]*-"$name".sh; do
    export_path "$path"
  done
  settle "$out"
}

restore_volatile() {
  local path saved
  for path in "${volatile[@]}"; do
    saved=$scratch/volatile${path//\//_}
    if [[ -e $saved ]]; then
      cp -a "$saved" "$path"
    else
      rm -f "$path"
    fi
  done
}

case ${1:-} in
  --apt)
    shift
    _EB_RUN_DIR=$scratch
    _eb_apt "$@"
    restore_volatile
    ;;
  --stage)
    _eb_main --only "$2"
    restore_volatile
    export_component "$2"
    ;;
  *)
    _eb_main --only "$1"
    restore_volatile
    ;;
esac
rm -rf "$scratch" "$_EB_STATE"/logs/* "$_EB_STATE"/*.holder "$_EB_STATE"/run.*
[[ ${1:-} == --stage ]] || settle /
rm -f "$marker"
