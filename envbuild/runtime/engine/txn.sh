# ---- replacing an install: a journaled transaction per component ----
#
# Replacing component NAME sets its stamp, its provenance and the prefixes it
# owns alone aside (<path>.envbuild-old.<pid>), installs the new version, then
# writes the new stamp: that rename is the commit point. Before anything moves,
# the journal txn/NAME records the run, the key the new stamp will hold and each
# path with whether it existed, written durably (temporary file, fsync, rename,
# fsync of the directory). Whoever finishes a transaction (the run itself, its
# SIGINT/SIGTERM trap, or the next run after a kill) reads the journal: a stamp
# holding the new key means committed, and only what was set aside goes; anything
# else means not, and the old install comes back, its stamp last. Every step is
# idempotent (an aside that exists is the old copy; one that does not means its
# path was never moved), so finishing may itself be interrupted and redone.
# Journals are per component and name their run: transactions of different
# components are independent.

# The test hook, on the run's changes of state (made by its main process; the
# no-op path has none): with ENVBUILD_TEST_CRASH_AT=N:SIGNAL:main|group the run
# sends SIGNAL to its main process or to its whole process group at its Nth
# change; ENVBUILD_TEST_TRACE=FILE appends "N what" for each change.
_eb_point() {
  local at target
  [[ -n ${ENVBUILD_TEST_CRASH_AT:-}${ENVBUILD_TEST_TRACE:-} && $BASHPID == "$_EB_PID" ]] || return 0
  ((_EB_POINTS += 1))
  [[ -z ${ENVBUILD_TEST_TRACE:-} ]] || printf '%s %s\n' "$_EB_POINTS" "$*" >>"$ENVBUILD_TEST_TRACE"
  at=${ENVBUILD_TEST_CRASH_AT:-}
  [[ ${at%%:*} == "$_EB_POINTS" ]] || return 0
  target=${at##*:} at=${at#*:} at=${at%%:*}
  if [[ $target == group ]]; then
    kill -s "$at" 0
  else
    kill -s "$at" "$_EB_PID"
  fi
}

# Writes lines $2... to file $1 so that it survives a crash of the machine too:
# a temporary name, fsync, rename, fsync of the directory.
_eb_write_durably() {
  local file=$1 tmp=$1.tmp.$_EB_PID
  shift
  printf '%s\n' "$@" >"$tmp"
  sync "$tmp"
  mv -f "$tmp" "$file"
  sync "${file%/*}"
}

# The paths a replacement of component $2 sets aside, one per line into the
# variable named $1: stamp and provenance (its unit's, _EB_UNIT: the family's
# for a build per NIC family), and the prefixes it owns alone (a shared prefix
# cannot be set aside; its files are replaced in place). The stamp comes first.
_eb_txn_paths() {
  local var list=$_EB_STATE/stamps/$_EB_UNIT$'\n'$_EB_STATE/provenance/$_EB_UNIT
  if _eb_owns_prefixes "$2"; then
    # The journal is tab-separated lines: prefixes hold no control character (_eb_prefix_defaults).
    for var in ${_EB_OWNPREFIXES[$2]}; do
      list+=$'\n'${!var}
    done
  fi
  printf -v "$1" '%s' "$list"
}

# Begins replacing component $1 with the install whose stamp key is _EB_KEY:
# the journal first, then each existing path moves aside.
_eb_txn_begin() {
  local name=$1 journal=$_EB_STATE/txn/$1 paths path line state aside tab=$'\t' lines=()
  _eb_txn_paths paths "$name"
  # Fields are tab-separated: keys hold spaces.
  lines=("run$tab$_EB_PID$tab${HOSTNAME:-unknown}" "key$tab$_EB_KEY")
  while IFS= read -r path; do
    if [[ -e $path || -L $path ]]; then
      lines+=("present$tab$path$tab$path.envbuild-old.$_EB_PID")
    else
      lines+=("absent$tab$path")
    fi
  done <<<"$paths"
  mkdir -p "$_EB_STATE/txn"
  _eb_write_durably "$journal" "${lines[@]}"
  _eb_point "journal $name"
  for line in "${lines[@]:2}"; do
    IFS=$'\t' read -r state path aside <<<"$line"
    [[ $state == present ]] || continue
    mv -T "$path" "$aside"
    _eb_point "set aside $path"
  done
}

# Ends the transaction of component $1 after its commit: what was set aside
# goes, then the journal.
_eb_txn_end() {
  local journal=$_EB_STATE/txn/$1 line state path aside asides=() lines=()
  mapfile -t lines <"$journal"
  for line in "${lines[@]:2}"; do
    IFS=$'\t' read -r state path aside <<<"$line"
    if [[ $state == present && ( -e $aside || -L $aside ) ]]; then
      asides+=("$aside")
    fi
  done
  if ((${#asides[@]})); then
    rm -rf "${asides[@]}"
    _eb_point "drop the old install of $1"
  fi
  rm -f "$journal"
  _eb_point "journal done $1"
}

# Undoes the transaction of component $1: in reverse order, each path that was
# moved aside comes back in place of what the new install put there, and each
# path that did not exist goes; the stamp is the last to come back.
_eb_txn_rollback() {
  local journal=$_EB_STATE/txn/$1 state path aside i lines=()
  mapfile -t lines <"$journal"
  for ((i = ${#lines[@]} - 1; i >= 2; i--)); do
    IFS=$'\t' read -r state path aside <<<"${lines[i]}"
    if [[ $state == present ]]; then
      [[ -e $aside || -L $aside ]] || continue
      rm -rf "$path"
      mv -T "$aside" "$path"
      _eb_point "put back $path"
    elif [[ $state == absent && ( -e $path || -L $path ) ]]; then
      rm -rf "$path"
      _eb_point "remove $path"
    fi
  done
  rm -f "$journal"
  _eb_point "journal undone $1"
}

# Finishes the transaction of component $2: forward when the stamp holds the
# journal's key (committed), else back. What became of the component goes into
# the variable named $1: committed (what was set aside is removed), restored
# (the previous install is back), removed (there was none: it is not
# installed) or untouched (nothing had moved yet; the previous install is in place).
_eb_txn_finish() {
  local journal=$_EB_STATE/txn/$2 stamp=$_EB_STATE/stamps/$2 have='' line state path aside moved='' lines=()
  mapfile -t lines <"$journal"
  # The stamp is the first path the journal names (_eb_txn_paths): for a build
  # per NIC family, that family's, whichever family this run is on.
  ((${#lines[@]} < 3)) || IFS=$'\t' read -r _ stamp _ <<<"${lines[2]}"
  { read -r have <"$stamp"; } 2>/dev/null || :
  if ((${#lines[@]} < 2)); then
    # Written by rename, a journal is whole: this one is not envbuild's.
    _eb_warn "$journal is not a journal envbuild wrote; removing it"
    rm -f "$journal"
    printf -v "$1" untouched
    return 0
  fi
  for line in "${lines[@]:2}"; do
    IFS=$'\t' read -r state path aside <<<"$line"
    if [[ $state == present && ( -e $aside || -L $aside ) ]] || [[ $state == absent && ( -e $path || -L $path ) ]]; then
      moved=1
    fi
  done
  if [[ -n $have && $have == "${lines[1]#key$'\t'}" ]]; then
    _eb_txn_end "$2"
  else
    _eb_txn_rollback "$2"
  fi
  if [[ ! -e $stamp ]]; then
    printf -v "$1" removed
  elif [[ -z $moved ]]; then
    printf -v "$1" untouched
  elif [[ $have == "${lines[1]#key$'\t'}" ]]; then
    printf -v "$1" committed
  else
    printf -v "$1" restored
  fi
}

# Whether a run that is gone left something on this node: a journal, or its run
# directory (which every installing run has until it ends). Builtins only: it
# is on the no-op path.
_eb_pending() {
  local path pid
  for path in "$_EB_STATE"/txn/* "$_EB_STATE"/run.*; do
    [[ -e $path ]] || continue
    if [[ $path == */txn/* ]]; then
      { IFS=$'\t' read -r _ pid _ <"$path"; } 2>/dev/null || return 0
    else
      pid=${path##*.}
    fi
    kill -0 "$pid" 2>/dev/null || return 0
  done
  return 1
}

# Finishes every transaction a run that is gone left in the state dir (with the
# install lock held, every run but this one is gone; without it, only a run of
# this host that no longer exists is known to be), and says what it did.
_eb_recover() {
  local journal name pid host outcome
  for journal in "$_EB_STATE"/txn/*; do
    name=${journal##*/}
    [[ -f $journal && $name != *.tmp.* ]] || continue
    IFS=$'\t' read -r _ pid host <"$journal" || continue
    [[ $pid != "$_EB_PID" ]] || continue
    if [[ -z $_EB_INSTALL_LOCKED ]] && { [[ $host != "${HOSTNAME:-unknown}" ]] || kill -0 "$pid" 2>/dev/null; }; then
      continue
    fi
    _eb_stop_workers "$name"
    _eb_txn_finish outcome "$name"
    _EB_RECOVERED[$name]=$outcome
    case $outcome in
      committed) _eb_say "$name: a run killed after installing it (pid $pid) is finished" ;;
      restored) _eb_say "$name: a run killed while replacing it (pid $pid) is undone: the previous install is back" ;;
      removed) _eb_say "$name: a run killed while installing it (pid $pid) is undone: it is not installed" ;;
      untouched) _eb_say "$name: a run killed before replacing it (pid $pid) had changed nothing" ;;
    esac
  done
}

# Into the variable named $1: what --check adds to component $2's status when
# a run has an open transaction on it (empty when none has), such as a run that
# was killed while replacing it, which the next run finishes or undoes.
_eb_txn_note() {
  local journal=$_EB_STATE/txn/$2 pid host
  printf -v "$1" '%s' ''
  [[ -f $journal ]] && IFS=$'\t' read -r _ pid host <"$journal" || return 0
  if [[ $host != "${HOSTNAME:-unknown}" ]]; then
    printf -v "$1" ' (run %s on %s is installing it, or was stopped doing so)' "$pid" "$host"
  elif kill -0 "$pid" 2>/dev/null; then
    printf -v "$1" ' (run %s is installing it)' "$pid"
  else
    printf -v "$1" ' (run %s was stopped while installing it; the next run finishes or undoes that)' "$pid"
  fi
}

# Finishes this run's own open transactions (it is being stopped) and says,
# after $1, what became of each component.
_eb_finish_own() {
  local journal name pid outcome said=''
  for journal in "$_EB_STATE"/txn/*; do
    name=${journal##*/}
    [[ -f $journal && $name != *.tmp.* ]] || continue
    IFS=$'\t' read -r _ pid _ <"$journal" || continue
    [[ $pid == "$_EB_PID" ]] || continue
    _eb_txn_finish outcome "$name"
    case $outcome in
      committed) printf 'envbuild: error: %s after installing %s\n' "$1" "$name" >&2 ;;
      restored | untouched) printf 'envbuild: error: %s while installing %s: the previous install is in place\n' "$1" "$name" >&2 ;;
      removed) printf 'envbuild: error: %s while installing %s: it is not installed\n' "$1" "$name" >&2 ;;
    esac
    said=1
  done
  [[ -n $said || -z ${2:-} ]] || printf 'envbuild: error: %s\n' "$1" >&2
}

# The SIGINT and SIGTERM trap of an installing run ($1: the signal's name, $2:
# the exit status): stops what the run started, puts back what it was replacing,
# and exits.
_eb_on_signal() {
  trap '' INT TERM
  _eb_stop_tree "$_EB_PID"
  _eb_finish_own "interrupted by SIG$1" always
  rm -rf "${TMPDIR:-/tmp}/envbuild.$_EB_PID".*
  exit "$2"
}

# The EXIT trap of an installing run: a run that stops in the middle of a
# replacement (an error in the engine itself, a lock given up) puts the
# previous install back; its locks' notes and its run directory go.
_eb_on_exit() {
  local fd
  # Builds still in flight (the run stops on an error of its own) stop first.
  ((${#_EB_BUILDING[@]} == 0)) || _eb_stop_tree "$_EB_PID"
  _eb_finish_own "stopped"
  for fd in "${!_EB_LOCK_NOTE[@]}"; do
    _eb_unlock "$fd"
  done
  rm -rf "$_EB_RUN_DIR"
}

# Stops process $1 (the run itself excepted) and every process it started: a
# step and what it started, a lock wait, heartbeats. SIGTERM, then SIGKILL to
# those left after 10 s. They are found through /proc by their parents, as they
# share the run's process group (a foreground Ctrl-C reaches them all; a
# SIGTERM to the run alone does not).
_eb_stop_tree() {
  local stat line pid changed=1 i alive
  local -A parent=() doomed=()
  for stat in /proc/[0-9]*/stat; do
    { read -r line <"$stat"; } 2>/dev/null || continue
    pid=${line%% *} line=${line##*) } line=${line#* }
    parent[$pid]=${line%% *}
  done
  doomed[$1]=1
  while ((changed)); do
    changed=0
    for pid in "${!parent[@]}"; do
      if [[ -z ${doomed[$pid]:-} && -n ${doomed[${parent[$pid]}]:-} ]]; then
        doomed[$pid]=1 changed=1
      fi
    done
  done
  unset "doomed[$_EB_PID]"
  ((${#doomed[@]})) || return 0
  kill -s TERM "${!doomed[@]}" 2>/dev/null || :
  for ((i = 0; i < 100; i++)); do
    alive=''
    for pid in "${!doomed[@]}"; do
      { read -r line <"/proc/$pid/stat"; } 2>/dev/null || continue
      line=${line##*) }
      [[ $line == Z* ]] || { alive=1 && break; }
    done
    [[ -n $alive ]] || return 0
    sleep 0.1
  done
  kill -s KILL "${!doomed[@]}" 2>/dev/null || :
}

# The start time of process $2 (clock ticks after boot, from /proc), into the
# variable named $1; empty when there is no such process, or only its zombie.
# With the pid, it names a process for good: a pid alone may be reused.
_eb_started_at() {
  local line=''
  { read -r line <"/proc/$2/stat"; } 2>/dev/null || :
  line=${line##*) }
  if [[ -n $line && $line != Z* ]]; then
    read -r _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ _ line _ <<<"$line"
  else
    line=''
  fi
  printf -v "$1" '%s' "$line"
}

# Records in the open journal of component $1 (if any) that process $2 works on
# its new install: a run killed alone leaves it running, and whoever finishes
# the transaction stops it first.
_eb_txn_worker() {
  local journal=$_EB_STATE/txn/$1 started
  [[ -e $journal ]] || return 0
  _eb_started_at started "$2"
  printf 'worker\t%s\t%s\n' "$2" "$started" >>"$journal"
}

# Stops the processes still working on the transaction of component $1 that a
# killed run left (the step it was running; its main process alone was killed).
_eb_stop_workers() {
  local journal=$_EB_STATE/txn/$1 state pid started now lines=() line
  mapfile -t lines <"$journal"
  for line in "${lines[@]:2}"; do
    IFS=$'\t' read -r state pid started <<<"$line"
    [[ $state == worker ]] || continue
    _eb_started_at now "$pid"
    [[ -n $now && $now == "$started" ]] || continue
    _eb_say "$1: stopping the step a killed run left running (pid $pid)"
    _eb_stop_tree "$pid"
  done
}

# Writes the provenance and then the stamp of component $1 (named by its unit,
# _EB_UNIT, with the key _EB_KEY), each atomically; the stamp's rename commits
# the component's transaction.
_eb_stamp() {
  local now
  mkdir -p "$_EB_STATE/provenance"
  _eb_utc_now now
  # The record's fields are envbuild.formats.PROVENANCE_RECORD's.
  printf '%s\n' @PROVENANCE_RECORD@ >"$_EB_STATE/provenance/$_EB_UNIT.tmp.$_EB_PID"
  mv -f "$_EB_STATE/provenance/$_EB_UNIT.tmp.$_EB_PID" "$_EB_STATE/provenance/$_EB_UNIT"
  _eb_point "provenance $_EB_UNIT"
  _eb_write_durably "$_EB_STATE/stamps/$_EB_UNIT" "$_EB_KEY"
  _eb_point "stamp $_EB_UNIT"
}

# Removes what runs killed on this host left behind: their temporary files and
# notes, run and work directories, unfinished cache entries and downloads, after
# finishing the transactions they left (_eb_recover). Everything temporary ends
# in .<pid> (in the cache .<host>.<pid>): only what belongs to a process that is
# gone goes, never what a live run is writing. In the cache, what other hosts
# left goes once it is two days old by the cache filesystem's clock, unless the
# lock it belongs to is held (its writer is alive, however slow).
_eb_sweep() {
  local path pid note_host host=${HOSTNAME:-unknown}
  _eb_recover
  for path in "$_EB_STATE"/stamps/*.tmp.* "$_EB_STATE"/provenance/*.tmp.* "$_EB_STATE"/txn/*.tmp.* \
    "$_EB_STATE"/run.* "$_EB_STATE"/*.holder.* "$_EB_STATE"/.probe.* "$_EB_STATE"/nic-family.* \
    "${TMPDIR:-/tmp}"/envbuild.* \
    ${_EB_CACHE:+"$_EB_CACHE"/tmp/*."$host".* "$_EB_CACHE"/tmp/.probe."$host".* "$_EB_CACHE"/locks/*.holder."$host".* \
      "$_EB_CACHE"/locks/.probe."$host".*}; do
    [[ -e $path ]] || continue
    case ${path##*/} in
      envbuild.*) pid=${path##*/envbuild.} pid=${pid%%.*} ;;
      *) pid=${path##*.} ;;
    esac
    if [[ $pid =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
      rm -rf "$path"
    fi
  done
  # A lock's note stays when its holder was killed: it goes once that holder is.
  for path in "$_EB_STATE"/*.lock.holder ${_EB_CACHE:+"$_EB_CACHE"/locks/*.lock.holder}; do
    { read -r _ pid _ note_host _ <"$path"; } 2>/dev/null || continue
    if [[ $note_host == "$host" && $pid =~ ^[0-9]+$ && $pid != "$_EB_PID" ]] && ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$path"
    fi
  done
  [[ -z $_EB_CACHE || -n $_EB_CACHE_RO ]] || _eb_sweep_cache
}

# Hosts that never run again leave their temporary files in the cache's tmp/:
# they go when two days old by the cache filesystem's own clock (a node whose
# clock runs ahead must not judge others' files old) and when nobody holds the
# lock of the entry or download they belong to (tmp/<lock name>.<...>).
_eb_sweep_cache() {
  local now mtime path lock fd
  _eb_fs_now now "$_EB_CACHE/tmp"
  [[ -n $now ]] || return 0
  while IFS=$'\t' read -r mtime path; do
    ((${mtime%.*} + 2 * 86400 < now)) || continue
    lock=$_EB_CACHE/locks/${path%%.*}.lock
    if [[ -e $lock ]]; then
      { exec {fd}<>"$lock"; } 2>/dev/null || continue
      if flock -n "$fd" 2>/dev/null; then
        rm -rf "${_EB_CACHE:?}/tmp/$path"
      fi
      exec {fd}>&-
    else
      rm -rf "${_EB_CACHE:?}/tmp/$path"
    fi
  done < <(find "$_EB_CACHE/tmp" -mindepth 1 -maxdepth 1 ! -name '.probe.*' -printf '%T@\t%f\n' 2>/dev/null)
}
