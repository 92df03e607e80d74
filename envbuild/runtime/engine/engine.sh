# ---- envbuild engine: the same text runs in setup_deps.sh and in image builds ----
# The skip path (every component present) must stay free of subprocesses: only
# builtins, parameter expansion and `read` from stamp files. Nothing here depends
# on a recipe, so an image layer holding it survives any recipe change.

if [ -z "${BASH_VERSION:-}" ] || ((BASH_VERSINFO[0] < 4)); then
  echo "envbuild: error: setup_deps.sh needs bash 4 or newer" >&2
  # shellcheck disable=SC2317
  return 1 2>/dev/null || exit 1
fi

_EB_STATE_DEFAULT=/var/lib/envbuild
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
_EB_CACHE=''
_EB_CACHE_RO=''
_EB_BASE_IMAGE=''
declare -gA _EB_HASH=() _EB_DEPS=() _EB_RANKS=() _EB_NICS=() _EB_NICSPEC=() _EB_PREFIXVARS=() _EB_ENVCHAIN=() _EB_PREFIX_DEFAULT=() _EB_OWNPREFIXES=() _EB_USESPYTHON=() _EB_SOURCE=() _EB_PATCHES=()

_eb_say() { [[ -n ${_EB_QUIET:-} ]] || printf 'envbuild: %s\n' "$*"; }
_eb_warn() { printf 'envbuild: warning: %s\n' "$*" >&2; }
_eb_die() { printf 'envbuild: error: %s\n' "$*" >&2; exit 1; }

# The current UTC time as 2026-01-31T12:00:00Z, into the variable named $1.
_eb_utc_now() {
  TZ=UTC printf -v "$1" '%(%Y-%m-%dT%H:%M:%SZ)T' -1
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

_eb_component() {
  _EB_ORDER+=("$1")
  _EB_HASH[$1]=$2
  _EB_DEPS[$1]=$3
  _EB_RANKS[$1]=$4
  _EB_NICS[$1]=$5
  _EB_NICSPEC[$1]=$6
  _EB_PREFIXVARS[$1]=$7
  _EB_ENVCHAIN[$1]=$8
  _EB_OWNPREFIXES[$1]=$9
  _EB_USESPYTHON[$1]=${10}
}

# Install prefix $1 defaults to $2 unless the environment sets it.
_eb_prefix() {
  _EB_PREFIX_DEFAULT[$1]=$2
}

_eb_prefix_defaults() {
  local var
  for var in "${!_EB_PREFIX_DEFAULT[@]}"; do
    [[ -n ${!var:-} ]] || printf -v "$var" '%s' "${_EB_PREFIX_DEFAULT[$var]}"
  done
}

# Recipe-level environment, when the recipe part of the script defines one.
_eb_apply_recipe_env() {
  if declare -F _eb_recipe_env >/dev/null; then _eb_recipe_env; fi
}

_eb_state_dir() {
  _EB_STATE=${ENVBUILD_STATE_DIR:-$_EB_STATE_DEFAULT}
}

# The NIC family: ENVBUILD_NIC_FAMILY, else the cluster profile, else detection.
# Detection runs once per hardware fingerprint; the result is kept in the state dir.
_eb_nic_family() {
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
    ionic | mlx5 | bnxt | none) ;;
    *) _eb_die "NIC family '$_EB_NIC' (from $_EB_NIC_FROM) is not one of: ionic mlx5 bnxt none" ;;
  esac
}

_eb_detect_nic_family() {
  local root=${ENVBUILD_ROOT:-} fingerprint='' dev value cache cached_fp cached_family status=0
  for dev in "$root"/sys/class/infiniband/*; do
    [[ -e $dev ]] || continue
    value=''
    [[ -r $dev/device/vendor ]] && read -r value <"$dev/device/vendor"
    fingerprint+="${dev##*/}=$value;"
    for value in "$dev"/ports/*/state; do
      [[ -r $value ]] && read -r value <"$value" && fingerprint+="$value;"
    done
  done
  _eb_state_dir
  cache=$_EB_STATE/nic-family
  if [[ -r $cache ]] && { IFS=$'\t' read -r cached_fp cached_family <"$cache"; } && [[ $cached_fp == "$fingerprint" ]]; then
    _EB_NIC=$cached_family
    _EB_NIC_FROM="detection (cached in $cache)"
    return 0
  fi
  _EB_NIC=$(_eb_nic_detect --root "${root:-/}" --format family) || status=$?
  # 3: the rails are not what the profile expects (said on stderr); the family still holds.
  ((status == 0 || status == 3)) || _eb_die "NIC detection failed; set ENVBUILD_NIC_FAMILY=ionic|mlx5|bnxt|none to skip it"
  _EB_NIC_FROM=detection
  if mkdir -p "$_EB_STATE" 2>/dev/null; then
    printf '%s\t%s\n' "$fingerprint" "$_EB_NIC" >"$cache.$$" && mv -f "$cache.$$" "$cache"
  fi
  return 0
}

# Whether component $1 applies on this node; the reason it does not goes to _EB_WHY.
_eb_applies() {
  local ranks=${_EB_RANKS[$1]} nics=${_EB_NICS[$1]} rank=${NODE_RANK:-0}
  if [[ -n $ranks ]]; then
    [[ $rank =~ ^[0-9]+$ ]] || _eb_die "NODE_RANK='$rank' is not a whole number"
    if [[ " $ranks " != *" $((10#$rank)) "* ]]; then
      _EB_WHY="NODE_RANK=$rank; runs on NODE_RANK ${ranks// /,}"
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
_eb_key() {
  local var
  _EB_KEY=${_EB_HASH[$1]}
  if [[ ${_EB_NICSPEC[$1]} == 1 ]]; then
    _eb_nic_family
    _EB_KEY+=" nic=$_EB_NIC"
  fi
  for var in ${_EB_PREFIXVARS[$1]}; do
    _EB_KEY+=" $var=${!var}"
  done
}

# Sets _EB_STATUS of component $1 to present, missing or outdated.
_eb_status() {
  local stamp=$_EB_STATE/stamps/$1 have=''
  _eb_key "$1"
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

# Exports the environment of component $1 and of everything it depends on.
_eb_apply_env() {
  local name
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

# ---- helpers for install steps (run inside the step's subshell) ----

_eb_apt() {
  local package status missing=()
  for package in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "${package%%=*}" 2>/dev/null) || status=''
    [[ $status == "ii "* ]] || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  ((EUID == 0)) || _eb_die "apt packages missing: ${missing[*]}; run as root or install them first"
  if [[ ! -e $_EB_RUN_DIR/apt-updated ]]; then
    apt-get update -q
    : >"$_EB_RUN_DIR/apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# _eb_pip [pip options...] requirements...: the image is ours to manage, so pip
# may install over distro packages and as root. With ENVBUILD_SOURCE_DIR, pip
# takes packages from its pip/ directory only.
_eb_pip() {
  local offline=()
  [[ -z ${ENVBUILD_SOURCE_DIR:-} ]] || offline=(--no-index --find-links "$ENVBUILD_SOURCE_DIR/pip")
  PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$EB_PYTHON" -m pip install --no-input "${offline[@]}" "$@"
}

# Clones repository $1 at commit $2 into ./src (submodules if $3 is 1) and enters
# it; with ENVBUILD_SOURCE_DIR, from the mirror $4 that `envbuild fetch` put there.
# An unpinned source (no commit, branch $5) gets the branch's tip, with a warning.
_eb_git() {
  local url=$1 commit=$2 origin=$1 head
  if [[ -n ${ENVBUILD_SOURCE_DIR:-} ]]; then
    origin=$ENVBUILD_SOURCE_DIR/git/$4.git
    [[ -d $origin ]] || _eb_die "$url is not in ENVBUILD_SOURCE_DIR (no $origin); run envbuild fetch"
  fi
  git init -q src
  cd src
  git remote add origin "$origin"
  if [[ -z $commit ]]; then
    _eb_warn "$url is not pinned: installing the tip of branch $5 (envbuild lock pins it)"
    git fetch -q --depth 1 origin "refs/heads/$5"
    git -c advice.detachedHead=false checkout -q FETCH_HEAD
    EB_SRC=$PWD
    return 0
  fi
  if ! git fetch -q --depth 1 origin "$commit"; then
    _eb_say "fetching $commit by itself failed; fetching all branches and tags of $origin"
    git fetch -q --tags origin '+refs/heads/*:refs/remotes/origin/*'
  fi
  git -c advice.detachedHead=false checkout -q "$commit"
  head=$(git rev-parse HEAD)
  [[ $head == "$commit" ]] || _eb_die "$url: checked out $head, expected the pinned commit $commit"
  if [[ $3 == 1 ]]; then
    git submodule update -q --init --recursive
  fi
  EB_SRC=$PWD
}

# Fetches URL $1 to file $2; with ENVBUILD_SOURCE_DIR, copies it from its downloads/.
_eb_fetch_url() {
  if [[ -n ${ENVBUILD_SOURCE_DIR:-} ]]; then
    [[ -f $ENVBUILD_SOURCE_DIR/downloads/${1##*/} ]] || _eb_die "$1 is not in ENVBUILD_SOURCE_DIR (no downloads/${1##*/}); run envbuild fetch"
    cp "$ENVBUILD_SOURCE_DIR/downloads/${1##*/}" "$2"
  elif command -v curl >/dev/null; then
    curl -fsSL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null; then
    wget -q -O "$2" "$1"
  else
    "$EB_PYTHON" -c 'import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1]) as r, open(sys.argv[2], "wb") as f:
    shutil.copyfileobj(r, f)' "$1" "$2"
  fi
}

# The sha256 of file $1, into _EB_SHA256.
_eb_sha256() {
  _EB_SHA256=$(sha256sum "$1")
  _EB_SHA256=${_EB_SHA256%% *}
}

# Downloads $1 to ./$3, checks it against sha256 $2 (or reports it when unknown).
# With the shared cache, a verified download is kept as downloads/<sha256> (written
# to a temporary name, then renamed) and reused by the other nodes, checked again
# first; one node downloads while the others wait. Unverified downloads are not kept.
_eb_download() {
  local url=$1 expected=$2 file=$3 actual cached='' lock_fd='' tmp
  if [[ -n $_EB_CACHE && $expected != unknown ]]; then
    cached=$_EB_CACHE/downloads/$expected
    if [[ -z $_EB_CACHE_RO ]] && _eb_lock "$_EB_CACHE/locks/download-$expected.lock" "downloading $url"; then
      lock_fd=$_EB_LOCK_FD
    fi
    if [[ -f $cached ]] && cp "$cached" "$file.part"; then
      _eb_sha256 "$file.part"
      actual=$_EB_SHA256
      if [[ $actual == "$expected" ]]; then
        _eb_unlock "$lock_fd"
        mv -f "$file.part" "$file"
        EB_DOWNLOAD=$PWD/$file
        _eb_say "$url: verified copy from the shared cache ($cached)"
        return 0
      fi
      _eb_warn "$cached does not match its sha256 (it has $actual); downloading $url again"
      [[ -n $_EB_CACHE_RO ]] || rm -f "$cached"
    fi
  fi
  _eb_fetch_url "$url" "$file.part" || _eb_die "download of $url failed"
  _eb_sha256 "$file.part"
  actual=$_EB_SHA256
  if [[ $expected == unknown ]]; then
    _eb_warn "$url is unverified (no sha256 in the recipe); its sha256 is $actual"
  elif [[ $actual != "$expected" ]]; then
    _eb_die "sha256 mismatch for $url: expected $expected, got $actual"
  fi
  if [[ -n $cached && -z $_EB_CACHE_RO ]]; then
    tmp=$_EB_CACHE/tmp/download-$expected.${HOSTNAME:-unknown}.$$
    if cp "$file.part" "$tmp" && mv -f "$tmp" "$cached"; then
      _eb_say "$url: stored in the shared cache ($cached)"
    else
      rm -f "$tmp"
      _eb_warn "could not store $url in the shared cache ($cached)"
    fi
    _eb_unlock "$lock_fd"
  fi
  mv -f "$file.part" "$file"
  EB_DOWNLOAD=$PWD/$file
}

# Succeeds when Debian package $1 is installed at exactly version $2.
_eb_deb_installed() {
  local status
  status=$(dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null) || status=''
  [[ $status == "install ok installed $2" ]] || _eb_die "$1 $2 is not installed (dpkg says: ${status:-not known})"
}

# ---- the install loop ----

# ---- locks, shared build cache, install ----

# Takes an exclusive lock on file $1 for $2 (what it protects), into _EB_LOCK_FD.
# When the lock is busy it says who holds it (from the note <lock>.holder), waits
# ENVBUILD_LOCK_TIMEOUT seconds (default 3600), then stops naming the holder.
# Returns 1 when the filesystem refuses locks (some NFS setups): the caller goes on unlocked.
_eb_lock() {
  local file=$1 what=$2 fd rc since holder='' host=${HOSTNAME:-unknown}
  # flock would fail on anything else, and that would read as a filesystem without locks.
  [[ ${ENVBUILD_LOCK_TIMEOUT:-3600} =~ ^[0-9]+([.][0-9]+)?$ ]] ||
    _eb_die "ENVBUILD_LOCK_TIMEOUT='$ENVBUILD_LOCK_TIMEOUT' is not a number of seconds"
  exec {fd}<>"$file" || _eb_die "cannot open lock file $file"
  flock -n -E 75 "$fd" 2>/dev/null && rc=0 || rc=$?
  if ((rc == 75)); then
    [[ -r $file.holder ]] && read -r holder <"$file.holder"
    _eb_say "waiting for the lock on $file ($what), held by ${holder:-an unknown process}"
    flock -w "${ENVBUILD_LOCK_TIMEOUT:-3600}" -E 75 "$fd" 2>/dev/null && rc=0 || rc=$?
  fi
  case $rc in
    0)
      # The note's temporary name carries the host: other hosts sweep only their own.
      _eb_utc_now since
      printf 'pid %s on %s since %s (%s)\n' "$$" "$host" "$since" "$what" >"$file.holder.$host.$$"
      mv -f "$file.holder.$host.$$" "$file.holder"
      _EB_LOCK_FD=$fd
      return 0
      ;;
    75)
      exec {fd}>&-
      holder=''
      [[ -r $file.holder ]] && read -r holder <"$file.holder"
      # The run dies here: what it set up for this run goes first.
      [[ -z ${_EB_RUN_DIR:-} ]] || rm -rf "$_EB_RUN_DIR"
      _eb_die "gave up after ${ENVBUILD_LOCK_TIMEOUT:-3600} s waiting for the lock on $file ($what), held by ${holder:-an unknown process}; raise ENVBUILD_LOCK_TIMEOUT or stop that process"
      ;;
    127)
      exec {fd}>&-
      _eb_warn "flock (util-linux) is not installed; going on without the lock on $file for $what"
      _EB_LOCK_FD=''
      return 1
      ;;
    *)
      exec {fd}>&-
      _eb_warn "$file: the filesystem refuses locks (flock exit $rc); going on without the lock for $what"
      _EB_LOCK_FD=''
      return 1
      ;;
  esac
}

_eb_unlock() {
  local fd=$1
  [[ -n $fd ]] || return 0
  exec {fd}>&-
  _EB_OPEN_LOCKS=${_EB_OPEN_LOCKS/ $fd/}
}

# Removes what runs killed on this host left behind: their temporary stamps and
# notes, run and work directories, and unfinished cache entries and downloads.
# Everything temporary ends in .<pid> (cache files in .<host>.<pid>): only what
# belongs to a process that is gone goes, never what a live run is writing.
# In the cache, what other hosts left goes once it is two days old.
_eb_sweep() {
  local path pid name var host=${HOSTNAME:-unknown}
  # A replacement a killed run left unfinished: the old install comes back;
  # one it had finished leaves only old prefixes, which go.
  for path in "$_EB_STATE"/stamps/*.old.*; do
    [[ -e $path ]] || continue
    pid=${path##*.} name=${path##*/} name=${name%.old.*}
    if [[ $pid =~ ^[0-9]+$ && -n ${_EB_HASH[$name]:-} ]] && ! kill -0 "$pid" 2>/dev/null; then
      _eb_put_back "$name" "$pid"
    fi
  done
  for name in "${_EB_ORDER[@]}"; do
    for var in ${_EB_OWNPREFIXES[$name]}; do
      for path in "${!var}".envbuild-old.*; do
        pid=${path##*.}
        if [[ -e $path && $pid =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
          rm -rf "$path"
        fi
      done
    done
  done
  for path in "$_EB_STATE"/stamps/*.tmp.* "$_EB_STATE"/provenance/*.tmp.* "$_EB_STATE"/run.* "$_EB_STATE"/*.holder.* "$_EB_STATE"/nic-family.* \
    "${TMPDIR:-/tmp}"/envbuild.* ${_EB_CACHE:+"$_EB_CACHE"/tmp/*."$host".* "$_EB_CACHE"/locks/*.holder."$host".*}; do
    [[ -e $path ]] || continue
    case ${path##*/} in
      envbuild.*) pid=${path##*/envbuild.} pid=${pid%%.*} ;;
      *) pid=${path##*.} ;;
    esac
    if [[ $pid =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
      rm -rf "$path"
    fi
  done
  # Hosts that never run again leave theirs: whatever is two days old goes too.
  if [[ -n $_EB_CACHE && -z $_EB_CACHE_RO ]]; then
    find "$_EB_CACHE/tmp" -mindepth 1 -maxdepth 1 -mmin +2880 -exec rm -rf {} + 2>/dev/null || true
  fi
}

# The shared cache directory, or nothing when ENVBUILD_CACHE_DIR is unset or
# unusable. One this node cannot write to (a read-only mount of a cache filled
# elsewhere) is only restored from: _EB_CACHE_RO=1.
_eb_cache_dir() {
  local dir=${ENVBUILD_CACHE_DIR:-}
  _EB_CACHE='' _EB_CACHE_RO=''
  [[ -n $dir ]] || return 0
  # Steps change directory: a relative path would point elsewhere in them.
  [[ $dir == /* ]] || dir=$PWD/$dir
  if mkdir -p "$dir"/entries "$dir"/tmp "$dir"/locks "$dir"/downloads 2>/dev/null &&
    [[ -w $dir/entries && -w $dir/tmp && -w $dir/locks && -w $dir/downloads ]]; then
    _EB_CACHE=$dir
  elif [[ -d $dir/entries ]]; then
    _EB_CACHE=$dir _EB_CACHE_RO=1
    _eb_warn "ENVBUILD_CACHE_DIR=$dir is not writable here; restoring from it, building what it lacks without storing it"
  else
    _eb_warn "ENVBUILD_CACHE_DIR=$dir cannot be created; building without the shared cache"
  fi
}

# What makes a build differ between nodes beyond the stamp key: OS, CPU
# architecture, the recipe's base image and, for Python components, the
# interpreter and its prefix (the entry holds files under it). Into _EB_PLATFORM.
_eb_platform() {
  local line os=unknown version='' python=''
  if [[ -r /etc/os-release ]]; then
    while IFS= read -r line; do
      case $line in
        ID=*) os=${line#ID=} ;;
        VERSION_ID=*) version=${line#VERSION_ID=} ;;
      esac
    done </etc/os-release
  fi
  if [[ ${_EB_USESPYTHON[$1]} == 1 ]]; then
    python=$("${ENVBUILD_PYTHON:-python3}" -c 'import sys; print("%s%d.%d:%s" % (sys.implementation.name, *sys.version_info[:2], sys.prefix))') || python=unknown
  fi
  _EB_PLATFORM="os=${os//\"/}-${version//\"/} arch=$HOSTTYPE${_EB_BASE_IMAGE:+ image=$_EB_BASE_IMAGE}${python:+ python=$python}"
}

# Whether component $1 alone owns its install prefixes: none is a shared
# directory or overlaps another component's (so they may be set aside, restored
# or replaced whole). The reason it does not goes to _EB_WHY.
_eb_owns_prefixes() {
  local var dir other ovar odir
  for var in ${_EB_OWNPREFIXES[$1]}; do
    dir=${!var}
    while [[ $dir == */ ]]; do dir=${dir%/}; done
    case $dir in
      '' | /usr | /usr/local | /usr/local/bin | /usr/local/lib | /usr/bin | /usr/lib | /opt | /bin | /lib | /lib64 | /sbin | /etc | /var | /tmp | /home | /root | /srv | "${HOME:-/root}")
        _EB_WHY="its prefix $var=${!var} is a shared directory, which a restore would replace whole"
        return 1
        ;;
    esac
    for other in "${_EB_ORDER[@]}"; do
      [[ $other != "$1" ]] || continue
      for ovar in ${_EB_OWNPREFIXES[$other]}; do
        odir=${!ovar}
        while [[ $odir == */ ]]; do odir=${odir%/}; done
        if [[ $odir == "$dir" || $odir == "$dir"/* || $dir == "$odir"/* ]]; then
          _EB_WHY="its prefix $var=${!var} overlaps $ovar=${!ovar} of $other, which a restore would replace too"
          return 1
        fi
      done
    done
  done
}

# Whether component $1 goes through the shared cache: a restore replaces its
# prefixes whole, so it must own them.
_eb_cacheable() {
  if ! _eb_owns_prefixes "$1"; then
    _eb_warn "$1: not using the shared cache: $_EB_WHY"
    return 1
  fi
  [[ -n ${_EB_OWNPREFIXES[$1]} || ${_EB_USESPYTHON[$1]} == 1 ]]
}

# Sets the current install of component $1 aside before it is replaced: its
# stamp becomes the marker stamps/$1.old.<pid> (empty when there was none) and
# the prefixes it owns move to <prefix>.envbuild-old.<pid>. A failure, or the
# next run after a kill, puts them back (_eb_put_back); success drops them.
_eb_set_aside() {
  local var stamp=$_EB_STATE/stamps/$1
  if [[ -e $stamp ]]; then
    mv -f "$stamp" "$stamp.old.$$"
  else
    : >"$stamp.old.$$"
  fi
  _eb_owns_prefixes "$1" || return 0
  for var in ${_EB_OWNPREFIXES[$1]}; do
    rm -rf "${!var}.envbuild-old.$$"
    [[ ! -e ${!var} ]] || mv -T "${!var}" "${!var}.envbuild-old.$$"
  done
}

# Undoes an unfinished replacement of component $1 by run $2: the old install
# and its stamp come back, and what the new one left in its prefixes goes.
_eb_put_back() {
  local var marker=$_EB_STATE/stamps/$1.old.$2
  [[ -e $marker ]] || return 0
  if _eb_owns_prefixes "$1"; then
    for var in ${_EB_OWNPREFIXES[$1]}; do
      rm -rf "${!var}"
      [[ ! -e ${!var}.envbuild-old.$2 ]] || mv -T "${!var}.envbuild-old.$2" "${!var}"
    done
  fi
  if [[ -s $marker ]]; then
    mv -f "$marker" "$_EB_STATE/stamps/$1"
  else
    rm -f "$marker" "$_EB_STATE/stamps/$1"
  fi
}

# The new install of component $1 is stamped: what was set aside goes. Removing
# the marker is the commit point; the old prefixes are garbage after it.
_eb_drop_aside() {
  local var
  rm -f "$_EB_STATE/stamps/$1.old.$$"
  for var in ${_EB_OWNPREFIXES[$1]}; do
    rm -rf "${!var}.envbuild-old.$$"
  done
}

# Directories a Python component installs into, one per line.
_eb_python_dirs() {
  "$EB_PYTHON" -c 'import sysconfig
paths = sysconfig.get_paths()
print("\n".join(sorted({paths["purelib"], paths["platlib"], paths["scripts"]})))'
}

# Lists files, links and directories under the given roots with their change time.
_eb_snapshot() {
  local root
  for root in "$@"; do
    [[ -e $root ]] && find "$root" -xdev -printf '%P\t%C@\t%s\t%p\n'
  done | LC_ALL=C sort
  return 0
}

# Runs in the step's subshell, after the check: stores what the step installed
# into cache entry directory $1. Own prefixes are kept whole; Python directories
# as the difference against the snapshot $1/before.txt taken before the step.
_eb_capture() {
  local entry=$1 var dirs=()
  {
    for var in ${_EB_OWNPREFIXES[$_EB_NAME]}; do
      [[ ! -e ${!var} ]] || find "${!var}" -printf '%p\n'
    done
    if [[ ${_EB_USESPYTHON[$_EB_NAME]} == 1 ]]; then
      mapfile -t dirs < <(_eb_python_dirs)
      _eb_snapshot "${dirs[@]}" >"$entry/after.txt"
      # New or changed entries (their whole line differs) ...
      LC_ALL=C comm -13 "$entry/before.txt" "$entry/after.txt" | cut -f4
    fi
  } | sed 's|^/||' | LC_ALL=C sort -u >"$entry/files.txt"
  # ... and entries gone since (their path only).
  if [[ -e $entry/after.txt ]]; then
    LC_ALL=C comm -23 <(cut -f4 "$entry/before.txt" | LC_ALL=C sort -u) <(cut -f4 "$entry/after.txt" | LC_ALL=C sort -u) >"$entry/removed.txt"
  else
    : >"$entry/removed.txt"
  fi
  tar -C / --no-recursion -czf "$entry/files.tar.gz" -T "$entry/files.txt"
  rm -f "$entry/before.txt" "$entry/after.txt" "$entry/files.txt"
  (cd "$entry" && sha256sum files.tar.gz removed.txt >SHA256SUMS)
}

# Runs in a subshell: puts cache entry $1 in place. Exit 2 means the entry is corrupt.
_eb_restore() {
  local entry=$1 var path dirs=()
  (cd "$entry" && sha256sum --quiet --strict -c SHA256SUMS) || {
    echo "cache entry $entry does not match its SHA256SUMS"
    return 2
  }
  for var in ${_EB_OWNPREFIXES[$_EB_NAME]}; do
    rm -rf "${!var}"
  done
  tar -C / -xzf "$entry/files.tar.gz" || return 2
  [[ -s $entry/removed.txt ]] || return 0
  mapfile -t dirs < <(_eb_python_dirs)
  while IFS= read -r path; do
    for var in "${dirs[@]}"; do
      [[ $path != "$var"/* ]] || rm -rf "$path"
    done
  done <"$entry/removed.txt"
}

# Runs `$2 ARGS...` for component $1 in a subshell with the component's
# environment, output appended to its log, lock descriptors closed.
_eb_in_subshell() {
  if [[ ${ENVBUILD_STEP_OUTPUT:-} == stream ]]; then
    # Image builds: the builder's stream carries the step output live too
    # (envbuild image shows it with --verbose, and its tail on failure).
    _eb_subshell "$@" 2>&1 | tee -a "$_EB_LOG"
  else
    _eb_subshell "$@" >>"$_EB_LOG" 2>&1
  fi
}

_eb_subshell() {
  local name=$1 action=$2 var
  shift 2
  (
    set -euo pipefail
    trap - ERR
    for var in $_EB_OPEN_LOCKS; do
      exec {var}>&-
    done
    export EB_PYTHON=${ENVBUILD_PYTHON:-python3} EB_NIC_FAMILY=${_EB_NIC:-} EB_JOBS=${ENVBUILD_JOBS:-$(nproc)}
    for var in ${_EB_PREFIXVARS[$name]}; do
      export "${var?}"
    done
    _EB_NAME=$name
    _eb_apply_env "$name"
    "$action" "$@"
  ) </dev/null
}

# The step and then the check of the component, in a fresh work directory;
# with a capture directory, what the step installed is recorded there too.
_eb_build() {
  local id=${_EB_NAME//-/_} capture=${1:-} dirs=()
  if [[ -n $capture && ${_EB_USESPYTHON[$_EB_NAME]} == 1 ]]; then
    mapfile -t dirs < <(_eb_python_dirs)
    _eb_snapshot "${dirs[@]}" >"$capture/before.txt"
  fi
  cd "$_EB_WORK"
  "_eb_step_$id"
  cd /
  "_eb_check_$id"
  [[ -z $capture ]] || _eb_capture "$capture"
}

_eb_check_only() {
  "_eb_check_${_EB_NAME//-/_}"
}

# Takes the lock of cache entry $2 for building component $1; into entry_lock
# (a local of _eb_install), empty when the filesystem refuses locks.
_eb_entry_lock() {
  entry_lock=''
  [[ -z $_EB_CACHE_RO ]] || return 0
  if _eb_lock "$_EB_CACHE/locks/$2.lock" "building $1 for the shared cache"; then
    entry_lock=$_EB_LOCK_FD
    _EB_OPEN_LOCKS+=" $entry_lock"
  fi
}

# What tells cache entries $1 apart (its SHA256SUMS line: no two builds give the
# same archive), into _EB_ENTRY_ID.
_eb_entry_id() {
  local line=''
  [[ ! -r $1/SHA256SUMS ]] || read -r line <"$1/SHA256SUMS" || true
  _EB_ENTRY_ID="sums:$line"
}

# Installs component $1 (stamp key in _EB_KEY): restored from the shared cache
# when an entry exists (unless $2 is `fresh`, as for --force NAME), else built
# (and stored in the cache for other nodes).
# The stamp goes away first and comes back last, so a run killed at any point
# leaves no stamp without its files and the next run completes the install.
_eb_install() {
  local name=$1 started rc digest='' entry='' entry_lock='' capture='' failed='' aside
  _EB_LOG=$_EB_STATE/logs/$name.log
  _EB_WORK=${TMPDIR:-/tmp}/envbuild.$$.$name
  _eb_now started
  : >"$_EB_LOG"
  if [[ -n $_EB_CACHE ]] && _eb_cacheable "$name"; then
    _eb_platform "$name"
    digest=$(printf '%s %s\n' "$_EB_KEY" "$_EB_PLATFORM" | sha256sum)
    entry=$_EB_CACHE/entries/$name-${digest:0:32}
    [[ ${2:-} != fresh ]] || failed=fresh
    # An entry never changes once in place, so restores take no lock and every
    # node restores at once; the lock elects one builder of a missing entry,
    # and the others wait for it.
    [[ -d $entry ]] || _eb_entry_lock "$name" "${entry##*/}"
    # Only now, lock in hand: a run that gives up waiting leaves the install as it was.
    _eb_set_aside "$name"
    while [[ -d $entry && $failed != fresh ]]; do
      _eb_entry_id "$entry"
      if [[ $_EB_ENTRY_ID == "$failed" ]]; then
        # Still the entry that failed here, and this run holds its lock: it goes, and is rebuilt.
        aside=$_EB_CACHE/tmp/${entry##*/}.corrupt.${HOSTNAME:-unknown}.$$
        mv -T "$entry" "$aside" 2>/dev/null || true
        rm -rf "$aside"
        break
      fi
      _eb_unlock "$entry_lock"
      entry_lock=''
      _eb_say "$name: restoring from the shared cache (log: $_EB_LOG)"
      # Never call a step in a condition (&&, ||, if): bash would ignore set -e inside it.
      set +e
      _eb_in_subshell "$name" _eb_restore "$entry"
      rc=$?
      if ((rc == 0)); then
        _eb_in_subshell "$name" _eb_check_only
        rc=$?
      fi
      set -e
      if ((rc == 0)); then
        _eb_stamp "$name"
        _eb_drop_aside "$name"
        _eb_elapsed "$started"
        _eb_say "$name: restored from the shared cache in $_EB_ELAPSED s"
        ((_EB_RESTORED += 1))
        return 0
      fi
      _eb_warn "$name: cache entry $entry is corrupt or incomplete; rebuilding it (details in $_EB_LOG)"
      failed=$_EB_ENTRY_ID
      # Another node may have found it too: the one with the lock replaces it,
      # and the others restore the new entry.
      _eb_entry_lock "$name" "${entry##*/}"
    done
    if [[ -z $_EB_CACHE_RO ]]; then
      capture=$_EB_CACHE/tmp/${entry##*/}.${HOSTNAME:-unknown}.$$
      rm -rf "$capture"
      mkdir -p "$capture"
    fi
  fi
  [[ -n $entry ]] || _eb_set_aside "$name"
  _eb_say "$name: installing (log: $_EB_LOG)"
  rm -rf "$_EB_WORK"
  mkdir -p "$_EB_WORK"
  set +e
  _eb_in_subshell "$name" _eb_build "$capture"
  rc=$?
  set -e
  rm -rf "$_EB_WORK"
  _eb_elapsed "$started"
  if ((rc != 0)); then
    [[ -z $capture ]] || rm -rf "$capture"
    rm -rf "$_EB_RUN_DIR"
    _eb_unlock "$entry_lock"
    _eb_put_back "$name" "$$"
    _eb_report_failure "$name" "$_EB_LOG" "$rc"
    return 1
  fi
  if [[ -n $capture ]]; then
    # A directory rename is atomic: other nodes see the whole entry or none.
    mv -T "$capture" "$entry" 2>/dev/null || rm -rf "$capture"
  fi
  _eb_unlock "$entry_lock"
  _eb_stamp "$name"
  _eb_drop_aside "$name"
  _eb_say "$name: installed in $_EB_ELAPSED s${capture:+ (stored in the shared cache)}"
}

# Writes the provenance and then the stamp of component $1, each atomically.
_eb_stamp() {
  local now
  mkdir -p "$_EB_STATE/provenance"
  _eb_utc_now now
  printf '%s\n' "component=$1" "hash=${_EB_HASH[$1]}" "source=${_EB_SOURCE[$1]:-}" \
    "nic_family=${_EB_NIC:-}" "installed_at=$now" "recipe=$_EB_RECIPE" "recipe_hash=$_EB_RECIPE_HASH" \
    "envbuild_version=$_EB_VERSION" "patches=${_EB_PATCHES[$1]:-}" >"$_EB_STATE/provenance/$1.tmp.$$"
  mv -f "$_EB_STATE/provenance/$1.tmp.$$" "$_EB_STATE/provenance/$1"
  printf '%s\n' "$_EB_KEY" >"$_EB_STATE/stamps/$1.tmp.$$"
  mv -f "$_EB_STATE/stamps/$1.tmp.$$" "$_EB_STATE/stamps/$1"
}

_eb_report_failure() {
  local lines=() first line
  mapfile -t lines <"$2"
  first=$((${#lines[@]} > 25 ? ${#lines[@]} - 25 : 0))
  printf 'envbuild: error: %s failed (exit %s) after %s s; log: %s\n' "$1" "$3" "$_EB_ELAPSED" "$2" >&2
  for line in "${lines[@]:first}"; do
    printf '  | %s\n' "$line" >&2
  done
}

_eb_usage() {
  cat <<EOF
Usage: bash ${_EB_SELF##*/} [OPTION]...    or    source ${_EB_SELF##*/}

Installs the components of recipe '$_EB_RECIPE' that are missing or outdated on
this node, in dependency order, and exports their environment. A component whose
stamp holds its current hash is skipped without running anything.

Options:
  --check           report what would be installed; exit 1 if anything is missing
  --list            list the components with their hash, condition and dependencies
  --only NAME       install only NAME (repeatable); its dependencies must be present
  --force NAME      reinstall NAME and what depends on it (repeatable)
  --env             print the export lines of the environment, install nothing
  --detect-nic ...  print the node's RDMA NIC settings (--format env|json|text)
  -h, --help        show this help

Environment:
  ENVBUILD_STATE_DIR   stamps and logs (default $_EB_STATE_DEFAULT)
  ENVBUILD_PYTHON      the Python used by pip steps and NIC detection (default python3)
  ENVBUILD_NIC_FAMILY  ionic, mlx5, bnxt or none: skip NIC family detection
  NODE_RANK            this node's rank, for rank conditions (default 0)
  ${!_EB_PREFIX_DEFAULT[*]}  install prefixes
When sourced, options are not read (the caller's arguments would be seen); the
environment of the installed components is exported into the calling shell.
EOF
}

_eb_list() {
  local name condition
  for name in "${_EB_ORDER[@]}"; do
    condition=always
    [[ -z ${_EB_RANKS[$name]} ]] || condition="NODE_RANK in ${_EB_RANKS[$name]// /,}"
    [[ -z ${_EB_NICS[$name]} ]] || condition="${condition/#always/}${_EB_RANKS[$name]:+ and }NIC in ${_EB_NICS[$name]// /,}"
    printf '%-22s %s  %-28s %s\n' "$name" "${_EB_HASH[$name]:0:12}" "$condition" "${_EB_DEPS[$name]:+needs ${_EB_DEPS[$name]// /,}}"
  done
}

_eb_say_all_present() {
  local skipped=''
  (($2 == 0)) || skipped=", $2 skipped"
  _eb_say "all $(($1 - $2)) components present$skipped ($_EB_ELAPSED s)"
}

_eb_known() {
  [[ -n ${_EB_HASH[$1]:-} ]] || _eb_die "unknown component '$1' (components: ${_EB_ORDER[*]})"
}

_eb_main() {
  local mode=install name dep started locked=''
  local -A only=() force=() fresh=() reinstalled=()
  local installed=0 present=0 skipped=0 outstanding=0 total=${#_EB_ORDER[@]}
  _eb_now started
  while (($#)); do
    case $1 in
      -h | --help) _eb_usage; return 0 ;;
      --check) mode=check ;;
      --list) _eb_list; return 0 ;;
      --env) mode=env _EB_QUIET=1 ;;
      --detect-nic) shift; _eb_nic_detect "$@"; return ;;
      --only | --force)
        (($# > 1)) || _eb_die "$1 needs a component name"
        _eb_known "$2"
        if [[ $1 == --only ]]; then only[$2]=1; else force[$2]=1 fresh[$2]=1; fi
        shift
        ;;
      *) _eb_die "unknown option '$1' (see --help)" ;;
    esac
    shift
  done
  _eb_state_dir
  if [[ $mode == install ]]; then
    _EB_RUN_DIR=$_EB_STATE/run.$$
  fi
  for name in "${_EB_ORDER[@]}"; do
    if ((${#only[@]})) && [[ -z ${only[$name]:-} ]]; then
      ((total -= 1))
      continue
    fi
    if ! _eb_applies "$name"; then
      _eb_say "$name: skipped ($_EB_WHY)"
      ((skipped += 1))
      continue
    fi
    [[ $mode != env ]] || { _eb_apply_env "$name"; continue; }
    _eb_status "$name"
    for dep in ${_EB_DEPS[$name]}; do
      [[ -z ${reinstalled[$dep]:-} ]] || force[$name]=1
    done
    if [[ $_EB_STATUS == present && -z ${force[$name]:-} ]]; then
      [[ $mode == check ]] && _eb_say "$name: present"
      ((present += 1))
      continue
    fi
    if [[ $mode == check ]]; then
      _eb_say "$name: ${force[$name]:+forced, }$_EB_STATUS"
      ((outstanding += 1))
      continue
    fi
    if ((${#only[@]})); then
      for dep in ${_EB_DEPS[$name]}; do
        _eb_status "$dep"
        [[ $_EB_STATUS == present ]] || _eb_die "$name needs $dep, which is $_EB_STATUS; install it first"
      done
      _eb_key "$name"
    fi
    if [[ -z $locked ]]; then
      # Only installers take the lock; the no-op path above never does.
      locked=1
      mkdir -p "$_EB_STATE/stamps" "$_EB_STATE/logs"
      if _eb_lock "$_EB_STATE/install.lock" "installing into $_EB_STATE"; then
        _EB_OPEN_LOCKS+=" $_EB_LOCK_FD"
      fi
      _eb_cache_dir
      _eb_sweep
      mkdir -p "$_EB_RUN_DIR"
      _eb_status "$name"
      if [[ $_EB_STATUS == present && -z ${force[$name]:-} ]]; then
        _eb_say "$name: installed meanwhile by another run"
        ((present += 1))
        continue
      fi
    fi
    _eb_install "$name" "${fresh[$name]:+fresh}"
    reinstalled[$name]=1
    ((installed += 1))
  done
  case $mode in
    env)
      _eb_apply_recipe_env
      _eb_print_exports
      return 0
      ;;
    check)
      _eb_elapsed "$started"
      if ((outstanding)); then
        _eb_say "$outstanding of $total components to install ($_EB_ELAPSED s)"
        return 1
      fi
      _eb_say_all_present "$total" "$skipped"
      return 0
      ;;
  esac
  [[ ! -e $_EB_RUN_DIR ]] || rm -rf "$_EB_RUN_DIR"
  _eb_elapsed "$started"
  if ((installed)); then
    local restored=''
    ((_EB_RESTORED == 0)) || restored=" ($_EB_RESTORED from the shared cache)"
    _eb_say "installed $installed$restored, present $present, skipped $skipped of $total components ($_EB_ELAPSED s)"
  else
    _eb_say_all_present "$total" "$skipped"
  fi
  if [[ -n ${_EB_EXPORT_FD:-} ]]; then
    for name in "${_EB_ORDER[@]}"; do
      if _eb_applies "$name"; then _eb_apply_env "$name"; fi
    done
    _eb_apply_recipe_env
    _eb_print_exports >&"$_EB_EXPORT_FD"
  fi
}

# Prints the node's RDMA NIC settings; the detector is envbuild's own nic.py.
_eb_nic_detect() {
  local profile=()
  [[ -z $_EB_PROFILE_JSON ]] || profile=(--profile-json "$_EB_PROFILE_JSON")
  "${ENVBUILD_PYTHON:-python3}" -I - "${profile[@]}" "$@" <<'_EB_NIC_DETECT_PY_'
@NIC_DETECTOR@_EB_NIC_DETECT_PY_
}

# Runs the patch applier (envbuild's patchapply.py): `_eb_patch apply|verify MANIFEST`.
_eb_patch() {
  "${EB_PYTHON:-python3}" -I - "$1" --manifest "$2" <<'_EB_PATCH_APPLY_PY_'
@PATCH_APPLIER@_EB_PATCH_APPLY_PY_
}
