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
  elif [[ -d $dir/entries ]]; then
    _EB_CACHE=$dir _EB_CACHE_RO=1
    _eb_warn "ENVBUILD_CACHE_DIR=$dir is not writable here; restoring from it, building what it lacks without storing it"
  else
    _eb_warn "ENVBUILD_CACHE_DIR=$dir cannot be created; building without the shared cache"
  fi
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

# Takes the lock of cache entry $2 for building component $1; into entry_lock
# (a local of _eb_install), empty when the filesystem refuses locks.
_eb_entry_lock() {
  entry_lock=''
  [[ -z $_EB_CACHE_RO ]] || return 0
  if _eb_lock entry_lock "$_EB_CACHE/locks/$2.lock" "building $1 for the shared cache"; then
    _EB_OPEN_LOCKS+=" $entry_lock"
  fi
}

# What tells cache entries apart (its SHA256SUMS line: no two builds give the
# same archive): of entry $2, into the variable named $1.
_eb_entry_id() {
  local line=''
  [[ ! -r $2/SHA256SUMS ]] || read -r line <"$2/SHA256SUMS" || true
  printf -v "$1" 'sums:%s' "$line"
}
