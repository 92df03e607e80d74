# Sourced (by a launcher such as server.sh), the install runs in a subshell so
# that its `set -e` and failures never reach the caller; only the export lines
# it prints come back. Bash cannot tell `source setup_deps.sh --check` from a
# launcher's own arguments, so they are read as options only when the first is one.
_eb_sourced() {
  local exports rc had_errexit='' stdout_fd args=()
  case ${1:-} in
    -h | --help | --version | --check | --list | --env | -q | --quiet | --detect-nic | --only | --force) args=("$@") ;;
  esac
  [[ $- != *e* ]] || had_errexit=1
  set +e
  exec {stdout_fd}>&1
  exports=$(
    set -euo pipefail
    trap - ERR
    _EB_EXPORT_FD=3
    _eb_prefix_defaults
    _eb_main "${args[@]}" 3>&1 1>&"$stdout_fd"
  )
  rc=$?
  exec {stdout_fd}>&-
  ((rc != 0)) || eval "$exports"
  unset -f @FUNCTIONS@
  unset "${!_EB_@}"
  # Errexit comes back, and the status goes out, only with the final `return`:
  # a failing call here would end a caller that runs with `set -e`.
  _EB_TAIL="unset _EB_TAIL;${had_errexit:+ set -e;} return $rc"
}

# Called as a plain statement: inside `||` or `if`, bash would ignore set -e in every step.
if [[ ${BASH_SOURCE[0]} != "$0" ]]; then _eb_sourced "$@"; eval "$_EB_TAIL"; else set -euo pipefail; _eb_prefix_defaults; _eb_main "$@"; fi
