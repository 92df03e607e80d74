# ---- the shared build cache: keys, entries, capture and restore ----

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
    _eb_cache_format
  elif [[ -d $dir/entries ]]; then
    _EB_CACHE=$dir _EB_CACHE_RO=1
    _eb_warn "ENVBUILD_CACHE_DIR=$dir is not writable here; restoring from it, building what it lacks without storing it"
  else
    _eb_warn "ENVBUILD_CACHE_DIR=$dir cannot be created; building without the shared cache"
  fi
}

# The format this node stores entries in, into _EB_CACHE_FORMAT: zst (zstd,
# multi-threaded) when this node has zstd and no node of the cluster said it has
# none, else gz (gzip). A node without zstd says so in the cache (no-zstd/<host>,
# gone once it has zstd), so that the others store what it can restore.
_eb_cache_format() {
  local host=${HOSTNAME:-unknown} marker
  _EB_CACHE_FORMAT=gz
  if ! _eb_has_zstd; then
    { mkdir -p "$_EB_CACHE/no-zstd" && : >"$_EB_CACHE/no-zstd/$host"; } 2>/dev/null || :
    return 0
  fi
  rm -f "$_EB_CACHE/no-zstd/$host" 2>/dev/null || :
  for marker in "$_EB_CACHE"/no-zstd/*; do
    [[ ! -e $marker ]] || return 0
  done
  _EB_CACHE_FORMAT=zst
}

# Whether zstd can run here (type -P alone also names a zstd that cannot).
_eb_has_zstd() {
  local path
  path=$(type -P zstd) && [[ -x $path ]]
}

# What makes a build differ between nodes beyond the stamp key: OS, CPU
# architecture, the recipe's base image and, for Python components, the
# interpreter and its prefix (the entry holds files under it). Of component $2,
# into the variable named $1.
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
  if [[ ${_EB_USESPYTHON[$2]} == 1 ]]; then
    python=$("${ENVBUILD_PYTHON:-python3}" -c 'import sys; print("%s%d.%d:%s" % (sys.implementation.name, *sys.version_info[:2], sys.prefix))') || python=unknown
  fi
  printf -v "$1" '%s' "os=${os//\"/}-${version//\"/} arch=$HOSTTYPE${_EB_BASE_IMAGE:+ image=$_EB_BASE_IMAGE}${python:+ python=$python}"
}

# Whether component $1 alone owns its install prefixes: none overlaps another
# component's (so they may be set aside, restored or replaced whole; a system
# directory never gets here: _eb_check_prefix). The reason it does not goes to _EB_WHY.
_eb_owns_prefixes() {
  local var dir other ovar odir
  for var in ${_EB_OWNPREFIXES[$1]}; do
    # Prefixes come normalised (_eb_prefix_defaults).
    dir=${!var}
    for other in "${_EB_ORDER[@]}"; do
      [[ $other != "$1" ]] || continue
      for ovar in ${_EB_OWNPREFIXES[$other]}; do
        odir=${!ovar}
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

# Runs in a subshell, after the install is committed: writes what component
# _EB_NAME installed into the new cache entry directory $1. Own prefixes are
# kept whole; Python directories as the difference against the snapshot
# <run dir>/<name>.before taken before the step (lists stay on this node).
_eb_capture() {
  local entry=$1 lists=$_EB_RUN_DIR/$_EB_NAME var dirs=() pack=()
  {
    for var in ${_EB_OWNPREFIXES[$_EB_NAME]}; do
      [[ ! -e ${!var} ]] || find "${!var}" -printf '%p\n'
    done
    if [[ ${_EB_USESPYTHON[$_EB_NAME]} == 1 ]]; then
      mapfile -t dirs < <(_eb_python_dirs)
      _eb_snapshot "${dirs[@]}" >"$lists.after"
      # New or changed entries (their whole line differs) ...
      LC_ALL=C comm -13 "$lists.before" "$lists.after" | cut -f4
    fi
  } | sed 's|^/||' | LC_ALL=C sort -u >"$lists.files"
  # ... and entries gone since (their path only).
  if [[ -e $lists.after ]]; then
    LC_ALL=C comm -23 <(cut -f4 "$lists.before" | LC_ALL=C sort -u) <(cut -f4 "$lists.after" | LC_ALL=C sort -u) >"$entry/removed.txt"
  else
    : >"$entry/removed.txt"
  fi
  # zstd on every core: one node stores what the whole cluster restores.
  pack=(-z)
  [[ $_EB_CACHE_FORMAT != zst ]] || pack=(-I 'zstd -T0 -q')
  tar -C / --no-recursion "${pack[@]}" -cf "$entry/files.tar.$_EB_CACHE_FORMAT" -T "$lists.files"
  rm -f "$lists.before" "$lists.after" "$lists.files"
  (cd "$entry" && sha256sum "files.tar.$_EB_CACHE_FORMAT" removed.txt >SHA256SUMS)
}

# Runs in a subshell: puts cache entry $1 in place (its archive files.tar.zst
# or files.tar.gz). Exit 2: its files do not match SHA256SUMS; 3: its archive
# cannot be unpacked.
_eb_restore() {
  local entry=$1 var path dirs=() unpack=(-z) archive=$1/files.tar.gz
  (cd "$entry" && sha256sum --quiet --strict -c SHA256SUMS) || {
    echo "cache entry $entry does not match its SHA256SUMS"
    return 2
  }
  for var in ${_EB_OWNPREFIXES[$_EB_NAME]}; do
    rm -rf "${!var}"
  done
  if [[ -e $entry/files.tar.zst ]]; then
    unpack=(-I zstd) archive=$entry/files.tar.zst
  fi
  tar -C / "${unpack[@]}" -xf "$archive" || return 3
  [[ -s $entry/removed.txt ]] || return 0
  mapfile -t dirs < <(_eb_python_dirs)
  while IFS= read -r path; do
    for var in "${dirs[@]}"; do
      [[ $path != "$var"/* ]] || rm -rf "$path"
    done
  done <"$entry/removed.txt"
}

# Why cache entry $2 cannot be used as it is, into the variable named $1: empty
# when it looks whole (a directory holding exactly its archive, files.tar.zst or
# files.tar.gz (older entries), removed.txt and a SHA256SUMS of those two, one
# line each), `missing` when there is none, `zstd` when its archive is
# zstd-compressed and this node has no zstd. The files themselves are checked
# against SHA256SUMS by the restore.
_eb_entry_whole() {
  local entry=$2 path name extra='' archive=files.tar.gz lines=()
  if [[ -L $entry ]]; then
    printf -v "$1" 'it is a symbolic link'
  elif [[ ! -e $entry ]]; then
    printf -v "$1" missing
  elif [[ ! -d $entry ]]; then
    printf -v "$1" 'it is a file, not a directory'
  else
    printf -v "$1" ''
    for path in "$entry"/* "$entry"/.[!.]* "$entry"/..?*; do
      [[ -e $path || -L $path ]] || continue
      case ${path##*/} in
        SHA256SUMS | files.tar.gz | removed.txt) ;;
        files.tar.zst) archive=files.tar.zst ;;
        *) extra+=" ${path##*/}" ;;
      esac
    done
    [[ $archive != files.tar.zst || ! -e $entry/files.tar.gz ]] || extra+=" files.tar.gz"
    for name in "$archive" removed.txt SHA256SUMS; do
      if [[ ! -f $entry/$name || -L $entry/$name ]]; then
        printf -v "$1" 'it has no file %s' "$name"
        return 0
      fi
    done
    if [[ -n $extra ]]; then
      printf -v "$1" 'it holds more than its three files:%s' "$extra"
      return 0
    fi
    mapfile -t lines <"$entry/SHA256SUMS"
    if ((${#lines[@]} != 2)) || [[ ! ${lines[0]} =~ ^[0-9a-f]{64}\ \ files\.tar\.(gz|zst)$ || ${lines[0]##* } != "$archive" ||
      ! ${lines[1]} =~ ^[0-9a-f]{64}\ \ removed\.txt$ ]]; then
      printf -v "$1" 'its SHA256SUMS is not one line for %s and one for removed.txt' "$archive"
    elif [[ $archive == files.tar.zst ]] && ! _eb_has_zstd; then
      printf -v "$1" zstd
    fi
  fi
}

# Takes the lock of cache entry $2 for building component $1; into entry_lock
# (a local of _eb_install_begin), empty when the filesystem refuses locks.
# Returns 2 when it is busy and _EB_LOCK_NOWAIT is set.
_eb_entry_lock() {
  local rc=0
  _eb_lock entry_lock "$_EB_CACHE/locks/$2.lock" "building $1 for the shared cache" || rc=$?
  ((rc != 2)) || return 2
}

# Installs component $2 from cache entry $3 when it can (`restored` into the
# variable named $1); otherwise says how to build it: `build-store` when this
# run holds the entry's lock (or locks are unavailable) and the entry is missing,
# or was corrupt and is removed; `build` when the build is not to be stored (a
# read-only cache, or $4 = fresh for --force while the entry is whole).
# Every lock is taken while the current install is in place: a lock timeout,
# which ends the run, leaves it as it was. A corrupt entry is reported once,
# then looked at again under its lock (another node may have replaced it
# meanwhile: a whole entry is restored again, holding the lock) and replaced
# only by the node that finds it corrupt while holding the lock. With
# _EB_LOCK_NOWAIT set (this run builds other components meanwhile), an entry
# whose lock another run holds gives `busy`: nothing has changed.
_eb_from_cache() {
  local name=$2 entry=$3 fresh=$4 why warned='' locked=''
  while :; do
    _eb_entry_whole why "$entry"
    if [[ -z $why ]]; then
      if [[ -n $fresh ]]; then
        printf -v "$1" build
        return 0
      fi
      _eb_restore_txn why "$name" "$entry"
      if [[ -z $why ]]; then
        printf -v "$1" restored
        return 0
      fi
    fi
    if [[ $why == zstd && -z $warned ]]; then
      _eb_warn "$name: cache entry $entry is zstd-compressed and this node has no zstd; it will be rebuilt and stored with gzip, which every node restores"
      warned=1
    elif [[ $why != missing && -z $warned ]]; then
      _eb_warn "$name: cache entry $entry is corrupt or incomplete ($why); it will be rebuilt (details in $_EB_LOG)"
      warned=1
    fi
    if [[ -n $_EB_CACHE_RO ]]; then
      printf -v "$1" build
      return 0
    fi
    if [[ -n $locked ]]; then
      [[ $why == missing ]] || _eb_entry_remove "$entry"
      printf -v "$1" build-store
      return 0
    fi
    if ! _eb_entry_lock "$name" "${entry##*/}"; then
      printf -v "$1" busy
      return 0
    fi
    locked=1
  done
}

# Restores component $2 from cache entry $3 as a transaction: anything failing
# puts the current install back. Why it failed, or nothing, into the variable named $1.
_eb_restore_txn() {
  local name=$2 entry=$3 rc started
  _eb_now started
  _eb_say "$name: restoring from the shared cache (log: $_EB_LOG)"
  _eb_txn_begin "$name"
  # Never call a step in a condition (&&, ||, if): bash would ignore set -e inside it.
  set +e
  _eb_in_subshell "$name" _eb_restore "$entry"
  rc=$?
  if ((rc == 0)); then
    _eb_in_subshell "$name" _eb_check_only
    rc=$?
    ((rc == 0)) || rc=4
  fi
  set -e
  _eb_point "restored $name (exit $rc)"
  case $rc in
    0)
      _eb_stamp "$name"
      _eb_txn_end "$name"
      _eb_elapsed "$started"
      _eb_say "$name: restored from the shared cache in $_EB_ELAPSED s"
      ((_EB_RESTORED += 1))
      printf -v "$1" ''
      return 0
      ;;
    2) printf -v "$1" 'its files do not match its SHA256SUMS' ;;
    3) printf -v "$1" 'its archive cannot be unpacked' ;;
    4) printf -v "$1" 'the check failed after restoring it' ;;
    *) printf -v "$1" 'restoring it failed (exit %s)' "$rc" ;;
  esac
  _eb_txn_rollback "$name"
}

# Removes corrupt cache entry $1 (this run holds its lock): renamed into tmp/
# first, so that no node restores half of it.
_eb_entry_remove() {
  local aside=$_EB_CACHE/tmp/${1##*/}.corrupt.${HOSTNAME:-unknown}.$_EB_PID
  if mv -T "$1" "$aside" 2>/dev/null; then
    _eb_point "remove entry $1"
    rm -rf "$aside" 2>/dev/null || :
  else
    _eb_warn "could not remove the corrupt cache entry $1"
  fi
}

# Stores what component $2 installed as cache entry $3, best-effort: a failure
# is a warning and the install stands. `stored` or nothing into the variable named $1.
_eb_store() {
  local name=$2 entry=$3 capture=$_EB_CACHE/tmp/${3##*/}.${HOSTNAME:-unknown}.$_EB_PID rc
  printf -v "$1" ''
  rm -rf "$capture" 2>/dev/null || :
  if ! mkdir "$capture" 2>/dev/null; then
    _eb_warn "$name: not stored in the shared cache: cannot create $capture; it is installed on this node only"
    return 0
  fi
  set +e
  _eb_in_subshell "$name" _eb_capture "$capture"
  rc=$?
  set -e
  if ((rc == 0)) && mv -T "$capture" "$entry" 2>/dev/null; then
    # A directory rename is atomic: other nodes see the whole entry or none.
    _eb_point "store entry $entry"
    printf -v "$1" stored
    ((_EB_STORED += 1))
    return 0
  fi
  rm -rf "$capture" 2>/dev/null || :
  if ((rc != 0)); then
    _eb_warn "$name: not stored in the shared cache: writing $capture failed (details in $_EB_LOG); it is installed on this node only"
  elif [[ ! -e $entry ]]; then
    _eb_warn "$name: not stored in the shared cache: cannot rename $capture to $entry; it is installed on this node only"
  fi
}
