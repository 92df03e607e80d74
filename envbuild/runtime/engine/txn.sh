# ---- replacing an install: set aside, put back, commit, sweep what killed runs left ----

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

# Writes the provenance and then the stamp of component $1, each atomically.
_eb_stamp() {
  local now
  mkdir -p "$_EB_STATE/provenance"
  _eb_utc_now now
  # The record's fields are envbuild.formats.PROVENANCE_RECORD's.
  printf '%s\n' @PROVENANCE_RECORD@ >"$_EB_STATE/provenance/$1.tmp.$$"
  mv -f "$_EB_STATE/provenance/$1.tmp.$$" "$_EB_STATE/provenance/$1"
  printf '%s\n' "$_EB_KEY" >"$_EB_STATE/stamps/$1.tmp.$$"
  mv -f "$_EB_STATE/stamps/$1.tmp.$$" "$_EB_STATE/stamps/$1"
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
