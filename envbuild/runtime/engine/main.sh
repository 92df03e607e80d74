# ---- installing: subshells, one component, the run, options ----

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
    # Builds take from the recipe, never from the build host, what they would
    # detect: the job budget for make, CMake, PyTorch extensions and Python's
    # os.cpu_count() (3.13+; ninja reads no variable: steps pass -j "$EB_JOBS"),
    # and the GPU target.
    export MAKEFLAGS=-j$EB_JOBS CMAKE_BUILD_PARALLEL_LEVEL=$EB_JOBS MAX_JOBS=$EB_JOBS PYTHON_CPU_COUNT=$EB_JOBS
    export EB_GPU_TARGET=${_EB_GPUTARGET[$name]}
    [[ -z $EB_GPU_TARGET ]] || export PYTORCH_ROCM_ARCH=$EB_GPU_TARGET
    for var in ${_EB_PREFIXVARS[$name]}; do
      export "${var?}"
    done
    _EB_NAME=$name
    _eb_apply_build_env
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
  _eb_check_only
  [[ -z $capture ]] || _eb_capture "$capture"
}

# Checks run without pipefail: in `cmd | grep -q X` grep decides, even when it
# stops reading early and cmd dies of SIGPIPE.
_eb_check_only() {
  set +o pipefail
  "_eb_check_${_EB_NAME//-/_}"
  set -o pipefail
}

# Installs component $1 (stamp key in _EB_KEY): restored from the shared cache
# when an entry exists (unless $2 is `fresh`, as for --force NAME), else built
# (and stored in the cache for other nodes).
# The stamp goes away first and comes back last, so a run killed at any point
# leaves no stamp without its files and the next run completes the install.
_eb_install() {
  local name=$1 started rc digest='' entry='' entry_lock='' capture='' failed='' aside platform entry_id
  _EB_LOG=$_EB_STATE/logs/$name.log
  # Image builds name a fixed stem: tools record the path (pip's direct_url.json), and layers must not vary.
  _EB_WORK=${_EB_WORK_STEM:-${TMPDIR:-/tmp}/envbuild.$$}.$name
  _eb_now started
  : >"$_EB_LOG"
  if [[ -n $_EB_CACHE ]] && _eb_cacheable "$name"; then
    _eb_platform platform "$name"
    digest=$(printf '%s %s\n' "$_EB_KEY" "$platform" | sha256sum)
    entry=$_EB_CACHE/entries/$name-${digest:0:32}
    [[ ${2:-} != fresh ]] || failed=fresh
    # An entry never changes once in place, so restores take no lock and every
    # node restores at once; the lock elects one builder of a missing entry,
    # and the others wait for it.
    [[ -d $entry ]] || _eb_entry_lock "$name" "${entry##*/}"
    # Only now, lock in hand: a run that gives up waiting leaves the install as it was.
    _eb_set_aside "$name"
    while [[ -d $entry && $failed != fresh ]]; do
      _eb_entry_id entry_id "$entry"
      if [[ $entry_id == "$failed" ]]; then
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
      failed=$entry_id
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

# Names component $1, its log $2 and exit status $3, with the reason the step or
# check gave (its last `envbuild: error:` line), then the log's last lines.
_eb_report_failure() {
  local lines=() first line reason='' index
  mapfile -t lines <"$2"
  first=$((${#lines[@]} > 25 ? ${#lines[@]} - 25 : 0))
  for ((index = ${#lines[@]} - 1; index >= 0; index--)); do
    if [[ ${lines[index]} == 'envbuild: error: '* ]]; then
      reason=": ${lines[index]#envbuild: error: }"
      break
    fi
  done
  printf 'envbuild: error: %s failed (exit %s) after %s s%s; log: %s\n' "$1" "$3" "$_EB_ELAPSED" "$reason" "$2" >&2
  for line in "${lines[@]:first}"; do
    printf '  | %s\n' "$line" >&2
  done
}

_eb_usage() {
  cat <<EOF
Usage: bash ${_EB_SELF##*/} [OPTION]...    or    source ${_EB_SELF##*/} [OPTION]...

Installs the components of recipe '$_EB_RECIPE' that are missing or outdated on
this node, in dependency order, and exports their environment. A component whose
stamp holds its current hash is skipped without running anything.

Options:
  --check           report what would be installed; exit 3 if anything would be
  --list            list the components with their hash, condition and dependencies
  --only NAME       install only NAME (repeatable); its dependencies must be present
  --force NAME      reinstall NAME and what depends on it (repeatable)
  --env             print the export lines of the environment, install nothing
  --detect-nic ...  print the node's RDMA NIC settings (--format env|json|text)
  -q, --quiet       no progress lines; warnings and errors only
  --version         the recipe, its hash and the envbuild that wrote this script
  -h, --help        show this help
Sourced, the options work the same when the first argument is one of them
(source ${_EB_SELF##*/} --check); other arguments are the caller's own and are
not read. The environment of the installed components is exported into the
calling shell.

Environment (every variable the script reads):
  ENVBUILD_STATE_DIR     stamps, provenance and logs (default $_EB_STATE_DEFAULT)
  ENVBUILD_PYTHON        the Python of pip steps, patches and NIC detection (default python3)
  ENVBUILD_NIC_FAMILY    @NIC_FAMILY_CHOICES@: the NIC family; skips detection
  ENVBUILD_ROOT          filesystem root NIC detection reads (default /)
  ENVBUILD_NIC_DSCP      RoCE DSCP, over what the node's tools say
  ENVBUILD_NIC_SL        InfiniBand service level, over what the node's tools say
  ENVBUILD_JOBS          parallel build jobs, \$EB_JOBS in steps (default: nproc)
  ENVBUILD_CACHE_DIR     shared build cache of the cluster (default: none)
  ENVBUILD_LOCK_TIMEOUT  seconds to wait for a lock before giving up (default 3600)
  ENVBUILD_SOURCE_DIR    offline sources written by envbuild fetch (a directory or its http:// URL);
                         nothing is downloaded
  ENVBUILD_STEP_OUTPUT   stream: step output also on stdout (image builds)
  NODE_RANK              this node's rank, for rank conditions (default: SLURM_NODEID, else 0)
  SLURM_NODEID           the rank under srun when NODE_RANK is unset
  TMPDIR                 where steps build (default /tmp)
  ${!_EB_PREFIX_DEFAULT[*]}  install prefixes (absolute paths)

Exit status: 0 done; 1 failed; 2 usage (a bad option, component or variable);
3 --check found something to install; 130 interrupted (Ctrl-C), 143 terminated.
EOF
}

_eb_version() {
  printf '%s: recipe %s (hash %s), written by envbuild %s\n' "${_EB_SELF##*/}" "$_EB_RECIPE" "$_EB_RECIPE_HASH" "$_EB_VERSION"
}

# A command line (or environment) the script cannot work with: exit status 2.
_eb_usage_error() {
  printf 'envbuild: error: %s\n' "$*" >&2
  exit 2
}

_eb_list() {
  local name
  _eb_say_node_rank
  # Detection may fail here (no Python): the listing goes on without the family.
  (_eb_say_nic_family) || :
  for name in "${_EB_ORDER[@]}"; do
    printf '%-22s %s  %-28s %s\n' "$name" "${_EB_HASH[$name]:0:12}" "${_EB_CONDITION[$name]}" "${_EB_DEPS[$name]:+needs ${_EB_DEPS[$name]// /,}}"
  done
}

# When a component depends on the node's rank: which rank, and where it came from.
_eb_say_node_rank() {
  local name
  for name in "${_EB_ORDER[@]}"; do
    if [[ -n ${_EB_RANKS[$name]} ]]; then
      _eb_node_rank
      _eb_say "node rank $_EB_RANK (from $_EB_RANK_FROM)"
      return 0
    fi
  done
}

# When components are built per NIC family: which family, where it came from, and which.
_eb_say_nic_family() {
  local name specific=()
  for name in "${_EB_ORDER[@]}"; do
    [[ ${_EB_NICSPEC[$name]} != 1 ]] || specific+=("$name")
  done
  ((${#specific[@]})) || return 0
  _eb_nic_family
  _eb_say "NIC family $_EB_NIC (from $_EB_NIC_FROM); built for it: ${specific[*]}"
}

_eb_say_all_present() {
  local skipped=''
  (($2 == 0)) || skipped=", $2 skipped"
  _eb_say "all $(($1 - $2)) components present$skipped ($_EB_ELAPSED s)"
}

_eb_known() {
  [[ -n ${_EB_HASH[$1]:-} ]] || _eb_usage_error "unknown component '$1' (components: ${_EB_ORDER[*]})"
}

_eb_main() {
  local mode=install name dep started locked='' lock_fd
  local -A only=() force=() fresh=() reinstalled=()
  local installed=0 present=0 skipped=0 outstanding=0 total=${#_EB_ORDER[@]}
  _eb_now started
  while (($#)); do
    case $1 in
      -h | --help) _eb_usage; return 0 ;;
      --version) _eb_version; return 0 ;;
      --check) mode=check ;;
      --list) _eb_list; return 0 ;;
      --env) mode=env _EB_QUIET=1 ;;
      -q | --quiet) _EB_QUIET=1 ;;
      --detect-nic) shift; _eb_nic_detect "$@"; return ;;
      --only | --force)
        (($# > 1)) || _eb_usage_error "$1 needs a component name (see --help)"
        _eb_known "$2"
        if [[ $1 == --only ]]; then only[$2]=1; else force[$2]=1 fresh[$2]=1; fi
        shift
        ;;
      *) _eb_usage_error "unknown option '$1' (see --help)" ;;
    esac
    shift
  done
  _eb_state_dir
  if [[ $mode == install ]]; then
    _EB_RUN_DIR=$_EB_STATE/run.$$
  elif [[ $mode == check ]]; then
    _eb_say_node_rank
    _eb_say_nic_family
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
      _eb_preflight
      mkdir -p "$_EB_STATE/stamps" "$_EB_STATE/logs"
      if _eb_lock lock_fd "$_EB_STATE/install.lock" "installing into $_EB_STATE"; then
        _EB_OPEN_LOCKS+=" $lock_fd"
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
        return 3
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
