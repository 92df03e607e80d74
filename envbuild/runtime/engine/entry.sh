# Sourced (by a launcher such as server.sh), the install runs in a child process
# so that its `set -e` and failures never reach the caller; only the export
# lines it prints come back. The caller waits for them in `read`, which lets
# its traps run: a SIGINT or SIGTERM sent to the caller alone (`docker stop`
# signals PID 1 only) goes on to the child, whose own traps put back what it
# was replacing; then the caller's trap for it runs, or a non-interactive
# caller without one ends as the signal would have ended it. Bash cannot tell
# `source setup_deps.sh --check` from a launcher's own arguments, so they are
# read as options only when the first is one.
_eb_sourced() {
  local exports="" rc had_errexit="" stdout_fd exports_fd child caught="" traps tail args=()
  case ${1:-} in
    -h | --help | --version | --check | --list | --env | -q | --quiet | --detect-nic | --only | --force) args=("$@") ;;
  esac
  [[ $- != *e* ]] || had_errexit=1
  set +e
  traps=$(trap -p INT TERM)
  exec {stdout_fd}>&1
  exec {exports_fd}< <(
    set -euo pipefail
    trap - ERR
    _EB_EXPORT_FD=3
    _eb_prefix_defaults
    _eb_main "${args[@]}" 3>&1 1>&"$stdout_fd"
  )
  child=$!
  trap 'caught=INT; kill -s INT "$child" 2>/dev/null' INT
  trap 'caught=TERM; kill -s TERM "$child" 2>/dev/null' TERM
  # Both return above 128 when a trap ran while they waited; the child goes on.
  until IFS= read -r -d '' -u "$exports_fd" exports; (($? <= 128)); do :; done
  until wait "$child"; rc=$?; ((rc <= 128)) || ! kill -0 "$child" 2>/dev/null; do :; done
  exec {exports_fd}<&- {stdout_fd}>&-
  trap - INT TERM
  eval "$traps"
  ((rc != 0)) || eval "$exports"
  unset -f @FUNCTIONS@
  # Errexit comes back, and the status goes out, only with the final `return`:
  # a failing call here would end a caller that runs with `set -e`.
  tail="${had_errexit:+set -e; }return $rc"
  if [[ -n $caught && ($traps == *SIG$caught* || $- == *i*) ]]; then
    tail="kill -s $caught \$\$; $tail"
  elif [[ -n $caught ]]; then
    tail="exit $rc"
  fi
  unset "${!_EB_@}"
  _EB_TAIL="unset _EB_TAIL; $tail"
}

# Called as a plain statement: inside `||` or `if`, bash would ignore set -e in every step.
if [[ ${BASH_SOURCE[0]} != "$0" ]]; then _eb_sourced "$@"; eval "$_EB_TAIL"; else set -euo pipefail; _eb_prefix_defaults; _eb_main "$@"; fi
