# ---- locks: flock with a note naming the holder ----

# Takes an exclusive lock on file $2 for $3 (what it protects); its descriptor goes
# into the variable named $1 (empty when the lock could not be taken).
# When the lock is busy it says who holds it (from the note <lock>.holder), waits
# ENVBUILD_LOCK_TIMEOUT seconds (default 3600), then stops naming the holder.
# Returns 1 when the filesystem refuses locks (some NFS setups): the caller goes on unlocked.
_eb_lock() {
  local file=$2 what=$3 fd rc since holder='' host=${HOSTNAME:-unknown}
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
      printf -v "$1" '%s' "$fd"
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
      printf -v "$1" ''
      return 1
      ;;
    *)
      exec {fd}>&-
      _eb_warn "$file: the filesystem refuses locks (flock exit $rc); going on without the lock for $what"
      printf -v "$1" ''
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
