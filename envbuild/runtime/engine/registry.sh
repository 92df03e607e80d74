# ---- envbuild registry: what the component blocks below fill in ----
# Conventions of the engine (the rest of the script, after the components):
# - The skip path (every component present) starts no process at all: only
#   builtins, parameter expansion and `read` of stamp files. Functions on it
#   return results in globals (_EB_KEY, _EB_STATUS, _EB_WHY, _EB_NIC); the
#   others write results into the variable whose name they are given.
# - Nothing in the engine depends on a recipe, so an image layer holding it
#   survives any recipe change.

# Run by sh (dash) or an old bash: say which, and exit as for a usage error. One
# `if` at a time, so that sh never has to parse bash syntax before it exits.
if [ -z "${BASH_VERSION:-}" ]; then
  echo "envbuild: error: this script runs under bash 4 or newer, not sh: bash ${0##*/}" >&2
  # shellcheck disable=SC2317
  return 2 2>/dev/null || exit 2
fi
if ((BASH_VERSINFO[0] < 4)); then
  echo "envbuild: error: this script needs bash 4 or newer; this is bash $BASH_VERSION" >&2
  # shellcheck disable=SC2317
  return 2 2>/dev/null || exit 2
fi

_EB_STATE_DEFAULT=@STATE_DIR_DEFAULT@
_EB_RECIPE=''
_EB_RECIPE_HASH=''
_EB_VERSION=@VERSION@
_EB_PROFILE=''
_EB_PROFILE_NIC=''
_EB_PROFILE_JSON=''
_EB_SELF=${BASH_SOURCE[0]:-setup_deps.sh}
_EB_ORDER=()
_EB_EXPORTED=()
_EB_OPEN_LOCKS=''
_EB_RESTORED=0
_EB_STORED=0
_EB_PID=''
_EB_POINTS=0
_EB_INSTALL_LOCKED=''
_EB_CACHE=''
_EB_CACHE_RO=''
_EB_CACHE_FORMAT=gz
_EB_BASE_IMAGE=''
_EB_UNIT=''
_EB_NIC_PENDING=''
_EB_SHARE=''
_EB_LOCK_NOWAIT=''
declare -gA _EB_HASH=() _EB_DEPS=() _EB_RANKS=() _EB_NICS=() _EB_NICSPEC=() _EB_PREFIXVARS=() _EB_ENVCHAIN=() \
  _EB_PREFIX_DEFAULT=() _EB_OWNPREFIXES=() _EB_USESPYTHON=() _EB_SOURCE=() _EB_PATCHES=() _EB_CONDITION=() \
  _EB_GPUTARGET=() _EB_PROTECTED=() _EB_HEARTBEAT=() _EB_LOCK_NOTE=() _EB_RECOVERED=() _EB_BUILDING=()
# Each field of a component's registration, and the array it goes to.
declare -gA _EB_FIELDS=([hash]=_EB_HASH [depends]=_EB_DEPS [node_ranks]=_EB_RANKS [nics]=_EB_NICS
  [nic_specific]=_EB_NICSPEC [prefix_vars]=_EB_PREFIXVARS [env_chain]=_EB_ENVCHAIN [own_prefixes]=_EB_OWNPREFIXES
  [uses_python]=_EB_USESPYTHON [source]=_EB_SOURCE [patches]=_EB_PATCHES [condition]=_EB_CONDITION
  [gpu_target]=_EB_GPUTARGET [protected]=_EB_PROTECTED)

# Registers component $1 from field=value arguments (fields: _EB_FIELDS); a
# field not given is empty (0 for the flags nic_specific and uses_python).
_eb_component() {
  local name=$1 field
  shift
  _EB_ORDER+=("$name")
  for field in "${!_EB_FIELDS[@]}"; do
    printf -v "${_EB_FIELDS[$field]}[$name]" '%s' ''
  done
  _EB_NICSPEC[$name]=0 _EB_USESPYTHON[$name]=0 _EB_CONDITION[$name]=always
  for field in "$@"; do
    [[ -n ${_EB_FIELDS[${field%%=*}]:-} ]] || {
      printf 'envbuild: error: component %s: unknown field %s\n' "$name" "${field%%=*}" >&2
      return 1
    }
    printf -v "${_EB_FIELDS[${field%%=*}]}[$name]" '%s' "${field#*=}"
  done
}

# Install prefix $1 defaults to $2 unless the environment sets it.
_eb_prefix() {
  _EB_PREFIX_DEFAULT[$1]=$2
}
