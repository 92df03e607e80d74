# ---- locks: flock with a note naming the holder, kept fresh by a heartbeat ----

# Takes an exclusive lock on file $2 for $3 (what it protects); its descriptor goes
# into the variable named $1 (empty when the lock could not be taken) and into
# _EB_OPEN_LOCKS, which the processes the run starts close.
# When the lock is busy it says who holds it (from the note <lock>.holder, with the
# age of the holder's heartbeat), waits ENVBUILD_LOCK_TIMEOUT seconds, then stops
# naming the holder. The wait is a background flock and `wait`, so that a trapped
# SIGINT or SIGTERM ends it at once. While the lock is held, a heartbeat touches
# the note every ENVBUILD_LOCK_HEARTBEAT seconds.
# Returns 1 when the lock cannot be had at all (a lock file that cannot be opened,
# a filesystem that refuses locks, no flock): the caller goes on unlocked.
# With _EB_LOCK_NOWAIT set, a busy lock is not waited for: returns 2.
_eb_lock() {
  # _eb_fd, not fd: a caller may name its own variable fd ($1 is written by name).
  local file=$2 what=$3 _eb_fd rc holder timeout
  _eb_setting timeout ENVBUILD_LOCK_TIMEOUT
  printf -v "$1" ''
  if ! { exec {_eb_fd}<>"$file"; } 2>/dev/null; then
    _eb_warn "cannot open the lock file $file; going on without the lock for $what"
    return 1
  fi
  flock -n -E 75 "$_eb_fd" 2>/dev/null && rc=0 || rc=$?
  if ((rc == 75)) && [[ -n ${_EB_LOCK_NOWAIT:-} ]]; then
    exec {_eb_fd}>&-
    return 2
  elif ((rc == 75)); then
    _eb_holder holder "$file"
    _eb_say "waiting for the lock on $file ($what), held by $holder"
    _eb_background flock -w "$timeout" -E 75 "$_eb_fd"
    wait "$!" && rc=0 || rc=$?
  fi
  case $rc in
    0)
      _EB_OPEN_LOCKS+=" $_eb_fd"
      _eb_hold "$file" "$what" "$_eb_fd"
      printf -v "$1" '%s' "$_eb_fd"
      _eb_point "lock $file"
      return 0
      ;;
    75)
      exec {_eb_fd}>&-
      _eb_holder holder "$file"
      _eb_die "gave up after $timeout s waiting for the lock on $file ($what), held by $holder; raise ENVBUILD_LOCK_TIMEOUT or stop that process"
      ;;
    127)
      exec {_eb_fd}>&-
      _eb_warn "flock (util-linux) is not installed; going on without the lock on $file for $what"
      return 1
      ;;
    *)
      exec {_eb_fd}>&-
      _eb_warn "$file: the filesystem refuses locks (flock exit $rc); going on without the lock for $what"
      return 1
      ;;
  esac
}

# Runs `ARGS...` (a command or function) in a background subshell without the
# run's lock descriptors, so that it never keeps a lock after the run is gone;
# its pid is in $!.
_eb_background() {
  (
    local fd
    for fd in $_EB_OPEN_LOCKS; do
      exec {fd}>&-
    done
    "$@"
  ) &
}

# Writes the note of the lock on $1 (held for $2 through descriptor $3) and starts
# its heartbeat. The note is best-effort: a full or vanished filesystem only
# leaves waiters without it.
_eb_hold() {
  local note=$1.holder since line interval host=${HOSTNAME:-unknown}
  _eb_utc_now since
  line="pid $_EB_PID on $host since $since ($2)"
  # The note's temporary name carries the host: other hosts sweep only their own.
  { printf '%s\n' "$line" >"$note.$host.$_EB_PID" && mv -f "$note.$host.$_EB_PID" "$note"; } 2>/dev/null ||
    rm -f "$note.$host.$_EB_PID" 2>/dev/null || :
  _eb_setting interval ENVBUILD_LOCK_HEARTBEAT
  _eb_background _eb_heartbeat "$note" "$line" "$BASHPID" "$interval"
  _EB_HEARTBEAT[$3]=$! _EB_LOCK_NOTE[$3]=$note
  # Not a job of this shell: bash would report it killed at unlock.
  disown "$!"
}

# Touches note $1 every $4 seconds while it still says $2 and process $3 (the
# lock's holder) lives: waiters judge by its age whether the holder is alive.
# It keeps none of the run's descriptors (a caller reading the run's output
# would wait for it) and waits with `read -t` on a pipe of its own, not a
# sleep process that would outlive it.
_eb_heartbeat() {
  local note=$1 line=$2 owner=$3 interval=$4 seen path fd
  exec </dev/null >/dev/null 2>&1
  for path in "/proc/$BASHPID/fd/"*; do
    fd=${path##*/}
    ((fd <= 2)) || { exec {fd}>&-; } 2>/dev/null || :
  done
  exec {fd}<> <(:)
  while :; do
    read -rt "$interval" -u "$fd" _ || :
    kill -0 "$owner" || break
    { read -r seen <"$note"; } 2>/dev/null || break
    [[ $seen == "$line" ]] || break
    touch -c "$note" || :
  done
}

# Who holds the lock on file $2, from its note, with the age of its last
# heartbeat by the clock of the filesystem the note is on; into the variable named $1.
_eb_holder() {
  local note=$2.holder line='' age=''
  { read -r line <"$note"; } 2>/dev/null || :
  if [[ -z $line ]]; then
    printf -v "$1" 'an unknown process'
    return 0
  fi
  _eb_age age "$note"
  printf -v "$1" '%s%s' "$line" "${age:+, last heartbeat $age s ago}"
}

# Seconds since file $2 was last modified, judged by the clock of the filesystem
# holding it, not by this node's (which may be off); into the variable named $1,
# empty when that clock cannot be read.
_eb_age() {
  local now mtime
  printf -v "$1" ''
  _eb_fs_now now "${2%/*}"
  [[ -n $now ]] && mtime=$(stat -c %Y -- "$2" 2>/dev/null) || return 0
  printf -v "$1" '%d' $((now - mtime))
}

# The time (seconds since the epoch) by the clock of the filesystem holding
# directory $2: the modification time of a probe file written there; into the
# variable named $1, empty when the probe cannot be written.
_eb_fs_now() {
  local probe=$2/.probe.${HOSTNAME:-unknown}.$_EB_PID
  printf -v "$1" ''
  { : >"$probe"; } 2>/dev/null || return 0
  printf -v "$1" '%s' "$(stat -c %Y -- "$probe" 2>/dev/null)"
  rm -f "$probe"
}

# Releases the lock held through descriptor $1: its heartbeat stops and its note
# goes first, while no one else can have written one.
_eb_unlock() {
  local fd=$1 open kept=''
  [[ -n $fd ]] || return 0
  if [[ -n ${_EB_HEARTBEAT[$fd]:-} ]]; then
    kill "${_EB_HEARTBEAT[$fd]}" 2>/dev/null || :
    rm -f "${_EB_LOCK_NOTE[$fd]}" 2>/dev/null || :
    unset "_EB_HEARTBEAT[$fd]" "_EB_LOCK_NOTE[$fd]"
  fi
  exec {fd}>&-
  for open in $_EB_OPEN_LOCKS; do
    [[ $open == "$fd" ]] || kept+=" $open"
  done
  _EB_OPEN_LOCKS=$kept
}
