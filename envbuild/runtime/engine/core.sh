# ---- engine core: messages, time, state, NIC family, conditions, stamp keys, environment ----

_eb_say() { [[ -n ${_EB_QUIET:-} ]] || printf 'envbuild: %s\n' "$*"; }

_eb_warn() { printf 'envbuild: warning: %s\n' "$*" >&2; }

_eb_die() { printf 'envbuild: error: %s\n' "$*" >&2; exit 1; }

# The current UTC time as 2026-01-31T12:00:00Z, into the variable named $1;
# SOURCE_DATE_EPOCH instead when set (reproducible builds: image layers).
_eb_utc_now() {
  TZ=UTC printf -v "$1" '%(%Y-%m-%dT%H:%M:%SZ)T' "${SOURCE_DATE_EPOCH:--1}"
}

# Microseconds since the epoch, into the variable named $1.
_eb_now() {
  local now=${EPOCHREALTIME:-${SECONDS}.000000}
  printf -v "$1" '%s' "${now/[.,]/}"
}

# Seconds with three decimals between microsecond stamp $1 and now, into _EB_ELAPSED.
_eb_elapsed() {
  local end us
  _eb_now end
  us=$((10#$end - 10#$1))
  printf -v _EB_ELAPSED '%d.%03d' $((us / 1000000)) $(((us / 1000) % 1000))
}

# Numeric settings from the environment and their defaults (README: the runtime
# script's variables; empty: computed where used), all checked once before anything is installed.
declare -gA _EB_SETTINGS=([ENVBUILD_LOCK_TIMEOUT]=3600 [ENVBUILD_LOCK_HEARTBEAT]=15
  [ENVBUILD_DOWNLOAD_CONNECT_TIMEOUT]=10 [ENVBUILD_DOWNLOAD_STALL_TIMEOUT]=15
  [ENVBUILD_DOWNLOAD_TIMEOUT]=1800 [ENVBUILD_DOWNLOAD_RETRIES]=3
  [ENVBUILD_PARALLEL]='' [ENVBUILD_JOBS]='')

# Setting $2 (the environment's value, else its default), into the variable named $1.
_eb_setting() {
  printf -v "$1" '%s' "${!2:-${_EB_SETTINGS[$2]}}"
}

_eb_check_settings() {
  local name pattern what
  for name in "${!_EB_SETTINGS[@]}"; do
    [[ -n ${!name:-} ]] || continue
    case $name in
      ENVBUILD_LOCK_TIMEOUT) pattern='^[0-9]+([.][0-9]+)?$' what='a number of seconds' ;;
      ENVBUILD_DOWNLOAD_RETRIES) pattern='^[0-9]+$' what='a whole number' ;;
      ENVBUILD_PARALLEL) pattern='^[1-9][0-9]*$' what='a whole number of components (at least 1)' ;;
      ENVBUILD_JOBS) pattern='^[1-9][0-9]*$' what='a whole number of jobs (at least 1)' ;;
      *) pattern='^[1-9][0-9]*$' what='a whole number of seconds (at least 1)' ;;
    esac
    [[ ${!name} =~ $pattern ]] || _eb_usage_error "$name='${!name}' is not $what"
  done
  case ${ENVBUILD_NIC_FAMILY:-} in
    '' | @NIC_FAMILY_PATTERN@) ;;
    *) _eb_usage_error "ENVBUILD_NIC_FAMILY='$ENVBUILD_NIC_FAMILY' is not one of: @NIC_FAMILY_WORDS@" ;;
  esac
  _eb_node_rank
}

# Install prefixes the environment does not set get their defaults; one it sets must be absolute.
# Each is normalised (_eb_normal_path) and checked against what installing must not replace
# (_eb_check_prefix), in every mode and before anything moves; so is the state dir first.
# The prefixes a NIC-specific component owns hold a directory per NIC family, so
# that builds for several families live side by side: such a prefix left to its
# default, or set to the default's directory of a family (what an image's ENV
# or an earlier run exported), becomes the default's directory of this node's
# family once that is known (_eb_nic_family); until then it holds the default.
_eb_prefix_defaults() {
  local var name default
  local -A per_family=()
  _eb_state_dir
  _eb_guarded_dirs
  for name in "${_EB_ORDER[@]}"; do
    [[ ${_EB_NICSPEC[$name]} != 1 ]] || for var in ${_EB_OWNPREFIXES[$name]}; do per_family[$var]=1; done
  done
  for var in "${!_EB_PREFIX_DEFAULT[@]}"; do
    default=${_EB_PREFIX_DEFAULT[$var]}
    if [[ -n ${per_family[$var]:-} && (-z ${!var:-} || (${!var%/*} == "$default" && " @NIC_FAMILY_WORDS@ " == *" ${!var##*/} "*)) ]]; then
      printf -v "$var" '%s' "$default"
      _EB_NIC_PENDING+=" $var"
    elif [[ -z ${!var:-} ]]; then
      printf -v "$var" '%s' "$default"
    elif [[ ${!var} != /* ]]; then
      _eb_usage_error "$var='${!var}' is not an absolute path (an install prefix; the default is $default)"
    elif [[ ${!var} == *:* ]]; then
      _eb_usage_error "$var='${!var}' holds ':', which would split PATH and the other lists it goes into (an install prefix)"
    elif [[ ${!var} == *[[:cntrl:]]* ]]; then
      _eb_usage_error "$var holds a control character (an install prefix)"
    fi
    _eb_normal_path "$var" "$var" 'an install prefix'
    _eb_check_prefix "$var"
  done
}

# Path variable $1 (named $2 in messages, which say it is $3) without repeated or
# trailing slashes: /opt//x/ is /opt/x, the same stamps, the same install. A . or
# .. part is a usage error: paths are compared as written, and where .. leads
# depends on symlinks.
_eb_normal_path() {
  [[ /${!1}/ != */./* && /${!1}/ != */../* ]] \
    || _eb_usage_error "$2='${!1}' has a . or .. part: $3 is written without them (where .. leads depends on symlinks)"
  _eb_squeeze_slashes "$1"
}

# Path variable $1 without repeated or trailing slashes.
_eb_squeeze_slashes() {
  while [[ ${!1} == *//* ]]; do printf -v "$1" '%s' "${!1//\/\//\/}"; done
  while [[ ${!1} == /*/ ]]; do printf -v "$1" '%s' "${!1%/}"; done
}

# The directories besides the state dir that prefixes are compared with
# (_eb_prefix_clash), absolute and without repeated or trailing slashes: HOME
# into _EB_GUARD_HOME, the shared cache (ENVBUILD_CACHE_DIR, taken from the
# working directory when relative, as _eb_cache_dir does) into _EB_GUARD_CACHE,
# and the source dir (ENVBUILD_SOURCE_DIR when an absolute path: the script
# reads a relative one nowhere, _eb_sources refuses it, and a URL is no
# directory of this node) into _EB_GUARD_SOURCES; empty when unset.
_eb_guarded_dirs() {
  local dir
  _EB_GUARD_HOME=${HOME:-} _EB_GUARD_CACHE=${ENVBUILD_CACHE_DIR:-} _EB_GUARD_SOURCES=${ENVBUILD_SOURCE_DIR:-}
  [[ -z $_EB_GUARD_CACHE || $_EB_GUARD_CACHE == /* ]] || _EB_GUARD_CACHE=$PWD/$_EB_GUARD_CACHE
  for dir in _EB_GUARD_HOME _EB_GUARD_CACHE _EB_GUARD_SOURCES; do
    [[ ${!dir} == /* ]] || printf -v "$dir" ''
    _eb_squeeze_slashes "$dir"
  done
}

# Refuses (exit 2) install prefix $1 (absolute, normalised) where installing, which
# sets a prefix aside and replaces it whole, would take what is not its component's
# (_eb_prefix_clash), compared as written with the state dir and _eb_guarded_dirs.
_eb_check_prefix() {
  _eb_prefix_clash "${!1}" "$_EB_STATE" "$_EB_GUARD_HOME" "$_EB_GUARD_CACHE" "$_EB_GUARD_SOURCES" \
    || _eb_usage_error "$1='${!1}' $_EB_WHY: @PREFIX_RULE@"
}

# Whether directory $1 may be an install prefix: not a system directory
# (envbuild.spec.schema.SYSTEM_DIRECTORIES, which holds the parents of each), the
# state dir $2, one inside it or holding it (the run's own journals and locks
# would move aside with it), the home directory $3 or one holding it, the shared
# cache $4 or the source dir $5, one inside or holding either (the cluster's
# cache or the sources would move aside). All absolute and normalised; an empty
# one of $2 to $5 is not compared. What it is goes to _EB_WHY, as the rest of a
# sentence naming it.
_eb_prefix_clash() {
  _EB_WHY=''
  case $1 in
    @SYSTEM_DIRECTORIES@) _EB_WHY='is a system directory, which other programs share' ;;
    *)
      _eb_prefix_meets "$1" "$2" 'the state dir' ENVBUILD_STATE_DIR inside
      _eb_prefix_meets "$1" "$3" 'the home directory' HOME
      _eb_prefix_meets "$1" "$4" 'the shared cache' ENVBUILD_CACHE_DIR inside
      _eb_prefix_meets "$1" "$5" 'the source dir' ENVBUILD_SOURCE_DIR inside
      ;;
  esac
  [[ -z $_EB_WHY ]]
}

# Unless _EB_WHY says it already: whether directory $1 is directory $2 ($3, from
# variable $4), holds it or, with $5, lies inside it, into _EB_WHY.
# One with a . or .. part is not compared as written: where that leads depends
# on symlinks (_eb_resolved_prefixes compares it resolved).
_eb_prefix_meets() {
  [[ -z $_EB_WHY && -n $2 && /$2/ != */./* && /$2/ != */../* ]] || return 0
  if [[ $1 == "$2" ]]; then
    _EB_WHY="is $3 ($4)"
  elif [[ $2 == "$1"/* ]]; then
    _EB_WHY="holds $3 $2 ($4)"
  elif [[ -n ${5:-} && $1 == "$2"/* ]]; then
    _EB_WHY="lies inside $3 $2 ($4)"
  fi
}

# Recipe-level environment, when the recipe part of the script defines one.
_eb_apply_recipe_env() {
  if declare -F _eb_recipe_env >/dev/null; then _eb_recipe_env; fi
}

# The recipe's build settings (build_env), for the steps; image builds have them from the builder.
_eb_apply_build_env() {
  if declare -F _eb_build_env >/dev/null; then _eb_build_env; fi
}

# The state dir, into _EB_STATE: ENVBUILD_STATE_DIR, which must be absolute (steps
# change directory), else the default; normalised as prefixes are.
_eb_state_dir() {
  _EB_STATE=${ENVBUILD_STATE_DIR:-$_EB_STATE_DEFAULT}
  [[ $_EB_STATE == /* ]] \
    || _eb_usage_error "ENVBUILD_STATE_DIR='$_EB_STATE' is not an absolute path (the state dir; the default is $_EB_STATE_DEFAULT)"
  _eb_normal_path _EB_STATE ENVBUILD_STATE_DIR 'the state dir'
}

# The NIC family: ENVBUILD_NIC_FAMILY, else the cluster profile, else detection.
# Detection runs once per hardware fingerprint; the result is kept in the state dir.
_eb_nic_family() {
  local var
  [[ -z ${_EB_NIC:-} ]] || return 0
  if [[ -n ${ENVBUILD_NIC_FAMILY:-} ]]; then
    _EB_NIC=$ENVBUILD_NIC_FAMILY
    _EB_NIC_FROM=ENVBUILD_NIC_FAMILY
  elif [[ -n $_EB_PROFILE_NIC ]]; then
    _EB_NIC=$_EB_PROFILE_NIC
    _EB_NIC_FROM="cluster profile $_EB_PROFILE"
  else
    _eb_detect_nic_family
  fi
  case $_EB_NIC in
    @NIC_FAMILY_PATTERN@) ;;
    *) _eb_die "NIC family '$_EB_NIC' (from $_EB_NIC_FROM) is not one of: @NIC_FAMILY_WORDS@" ;;
  esac
  # The prefixes NIC-specific components own: this family's directory in each (_eb_prefix_defaults).
  for var in $_EB_NIC_PENDING; do
    printf -v "$var" '%s/%s' "${!var}" "$_EB_NIC"
  done
  _EB_NIC_PENDING=''
}

# Detection as envbuild.runtime.nic does it, by PCI vendor id, read here without
# a process when that decides: every RDMA device has a port and the vendor id of
# one and the same family (its family), or there is no RDMA device (none). That
# spares the container start a Python (60 to 90 ms). Anything else (mixed or
# unknown vendors), or a cluster profile that expects a rail count (the
# detector says on stderr when the node has another), asks the detector, once
# per hardware fingerprint: the result is kept in the state dir.
_eb_detect_nic_family() {
  local root=${ENVBUILD_ROOT:-} fingerprint='' dev value port ports vendor family seen='' undecided=''
  local cache cached_fp cached_family status=0
  for dev in "$root"/sys/class/infiniband/*; do
    [[ -e $dev ]] || continue
    value=''
    [[ -r $dev/device/vendor ]] && read -r value <"$dev/device/vendor"
    fingerprint+="${dev##*/}=$value;"
    vendor=${value,,}
    case $vendor in
      @NIC_VENDOR_CASES@
      *) family='' ;;
    esac
    ports=0
    for port in "$dev"/ports/*; do
      [[ ! ${port##*/} =~ ^[0-9]+$ ]] || ports=$((ports + 1))
      [[ -r $port/state ]] && read -r value <"$port/state" && fingerprint+="$value;"
    done
    [[ -n $family && $ports != 0 && ${seen:-$family} == "$family" ]] || undecided=1
    seen=$family
  done
  [[ $_EB_PROFILE_JSON != *'"rail_count"'* ]] || undecided=1
  if [[ -z $undecided && -n $seen ]]; then
    _EB_NIC=$seen _EB_NIC_FROM="detection (PCI vendor $vendor of every RDMA device)"
    return 0
  elif [[ -z $undecided ]]; then
    _EB_NIC=@NO_NIC@ _EB_NIC_FROM="detection (no RDMA device)"
    return 0
  fi
  cache=$_EB_STATE/nic-family
  if [[ -r $cache ]] && { IFS=$'\t' read -r cached_fp cached_family <"$cache"; } && [[ $cached_fp == "$fingerprint" ]]; then
    _EB_NIC=$cached_family
    _EB_NIC_FROM="detection (cached in $cache)"
    return 0
  fi
  _EB_NIC=$(_eb_nic_detect --root "${root:-/}" --format family) || status=$?
  # 3: the rails are not what the profile expects (said on stderr); the family still holds.
  ((status == 0 || status == 3)) || _eb_die "NIC detection failed; set ENVBUILD_NIC_FAMILY=@NIC_FAMILY_CHOICES@ to skip it"
  _EB_NIC_FROM=detection
  if mkdir -p "$_EB_STATE" 2>/dev/null; then
    printf '%s\t%s\n' "$fingerprint" "$_EB_NIC" >"$cache.$_EB_PID" && mv -f "$cache.$_EB_PID" "$cache"
  fi
  return 0
}

# The node's rank into _EB_RANK: NODE_RANK, else Slurm's SLURM_NODEID (srun sets
# it per node), else 0; _EB_RANK_FROM says which.
_eb_node_rank() {
  [[ -z ${_EB_RANK:-} ]] || return 0
  if [[ -n ${NODE_RANK:-} ]]; then
    _EB_RANK=$NODE_RANK _EB_RANK_FROM=NODE_RANK
  elif [[ -n ${SLURM_NODEID:-} ]]; then
    _EB_RANK=$SLURM_NODEID _EB_RANK_FROM=SLURM_NODEID
  else
    _EB_RANK=0 _EB_RANK_FROM="the default; neither NODE_RANK nor SLURM_NODEID is set"
  fi
  [[ $_EB_RANK =~ ^[0-9]+$ ]] || _eb_usage_error "${_EB_RANK_FROM%%;*}='$_EB_RANK' is not a whole number (the node's rank)"
}

# Whether component $1 applies on this node; the reason it does not goes to _EB_WHY.
_eb_applies() {
  local ranks=${_EB_RANKS[$1]} nics=${_EB_NICS[$1]}
  if [[ -n $ranks ]]; then
    _eb_node_rank
    if [[ " $ranks " != *" $((10#$_EB_RANK)) "* ]]; then
      _EB_WHY="node rank $_EB_RANK (from $_EB_RANK_FROM); runs on NODE_RANK ${ranks// /,}"
      return 1
    fi
  fi
  if [[ -n $nics ]]; then
    _eb_nic_family
    if [[ " $nics " != *" $_EB_NIC "* ]]; then
      _EB_WHY="NIC family $_EB_NIC; needs ${nics// /,}"
      return 1
    fi
  fi
  return 0
}

# The stamp key of component $1 into _EB_KEY: its content hash, the NIC family it
# was built for, and the prefixes it and its dependencies were installed into.
# Into _EB_UNIT, what its stamp and provenance are named by: the component, or
# component@family when it is built per NIC family (envbuild.formats.unit_name).
_eb_key() {
  local var
  _EB_KEY=${_EB_HASH[$1]} _EB_UNIT=$1
  if [[ ${_EB_NICSPEC[$1]} == 1 ]]; then
    _eb_nic_family
    _EB_KEY+=" nic=$_EB_NIC" _EB_UNIT+=@$_EB_NIC
  fi
  for var in ${_EB_PREFIXVARS[$1]}; do
    _EB_KEY+=" $var=${!var}"
  done
}

# Sets _EB_STATUS of component $1 to present, missing or outdated (and _EB_KEY, _EB_UNIT).
_eb_status() {
  local stamp have=''
  _eb_key "$1"
  stamp=$_EB_STATE/stamps/$_EB_UNIT
  if [[ ! -r $stamp ]]; then
    _EB_STATUS=missing
  elif read -r have <"$stamp" && [[ $have == "$_EB_KEY" ]]; then
    _EB_STATUS=present
  else
    _EB_STATUS=outdated
  fi
}

_eb_set() {
  export "$1=$2"
  _EB_EXPORTED+=("$1")
}

_eb_prepend() {
  local current=${!1:-}
  case ":$current:" in
    *":$2:"*) ;;
    *) current=$2${current:+:$current} ;;
  esac
  export "$1=$current"
  _EB_EXPORTED+=("$1")
}

# Exports the environment of component $1 and of everything it depends on (for
# one built per NIC family, that family's build: its prefixes are the family's).
_eb_apply_env() {
  local name
  [[ ${_EB_NICSPEC[$1]} != 1 ]] || _eb_nic_family
  for name in ${_EB_ENVCHAIN[$1]}; do
    "_eb_env_${name//-/_}"
  done
}

_eb_print_exports() {
  local name
  local -A printed=()
  for name in "${_EB_EXPORTED[@]}"; do
    [[ -z ${printed[$name]:-} ]] || continue
    printed[$name]=1
    printf 'export %s=%q\n' "$name" "${!name}"
  done
}
