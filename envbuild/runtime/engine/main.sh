# ---- installing: subshells, one component, the run, options ----

# Runs `$2 ARGS...` for component $1 in a subshell with the component's
# environment, output appended to its log, lock descriptors closed. The
# subshell runs in the background and is waited for: a trapped SIGINT or
# SIGTERM interrupts the wait at once (a foreground child would delay the trap
# until it ends).
_eb_in_subshell() {
  _eb_launch "$@"
  wait "$!"
}

# Starts `$2 ARGS...` for component $1 as _eb_in_subshell does, without waiting:
# its pid is in $!. The open transaction of the component records it (a run
# killed alone leaves it running; whoever finishes the transaction stops it).
_eb_launch() {
  _eb_background _eb_logged "$@"
  _eb_txn_worker "$1" "$!"
}

# In the background subshell: the output goes to the log from here, so that
# nothing in the background holds the run's own output open (a caller reading
# it would wait for a step its run left; a redirection of the call itself
# would leave bash's saved copies of it there).
_eb_logged() {
  if [[ ${ENVBUILD_STEP_OUTPUT:-} == stream ]]; then
    # Image builds: the builder's stream carries the step output live too
    # (envbuild image shows it with --verbose, and its tail on failure).
    _eb_subshell "$@" 2>&1 | tee -a "$_EB_LOG"
  else
    exec >>"$_EB_LOG" 2>&1
    _eb_subshell "$@"
  fi
}

_eb_subshell() {
  local name=$1 action=$2 var
  shift 2
  (
    set -euo pipefail
    # A background subshell starts with SIGINT and SIGQUIT ignored; steps get them back.
    trap - ERR INT QUIT
    for var in $_EB_OPEN_LOCKS; do
      exec {var}>&-
    done
    # Locks a step takes (downloads, pip, apt) may get those numbers again; it waits for them.
    _EB_OPEN_LOCKS='' _EB_LOCK_NOWAIT=''
    # The job budget: this component's share of ENVBUILD_JOBS (_eb_schedule).
    export EB_PYTHON=${ENVBUILD_PYTHON:-python3} EB_NIC_FAMILY=${_EB_NIC:-} EB_JOBS=${_EB_SHARE:-${ENVBUILD_JOBS:-$(nproc)}}
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
    # Steps' own apt-get and dpkg (dpkg -i of a .deb) wait for the node's
    # package lock: components built at the same time never run two at once.
    # shellcheck disable=SC2317 # the steps call them
    apt-get() { _eb_exclusive apt command apt-get "$@"; }
    # shellcheck disable=SC2317 # the steps call them
    dpkg() { _eb_exclusive apt command dpkg "$@"; }
    _eb_apply_build_env
    _eb_apply_env "$name"
    "$action" "$@"
  ) </dev/null
}

# The step and then the check of the component, in a fresh work directory;
# with a file name $1, a snapshot of the Python directories taken before the
# step goes there (for _eb_capture).
_eb_build() {
  local id=${_EB_NAME//-/_} dirs=()
  if [[ -n ${1:-} && ${_EB_USESPYTHON[$_EB_NAME]} == 1 ]]; then
    mapfile -t dirs < <(_eb_python_dirs)
    _eb_snapshot "${dirs[@]}" >"$1"
  fi
  cd "$_EB_WORK"
  "_eb_step_$id"
  cd /
  _eb_check_only
}

# Checks run without pipefail: in `cmd | grep -q X` grep decides, even when it
# stops reading early and cmd dies of SIGPIPE.
_eb_check_only() {
  set +o pipefail
  "_eb_check_${_EB_NAME//-/_}"
  set -o pipefail
}

# Whether the prefixes component $1 owns alone are its to replace: each one that
# exists and is not empty must be the one its stamp records. Replacing an
# install sets its prefixes aside and deletes them, so a first install into a
# directory in use, or a prefix moved onto one, would delete someone's files.
# A forced install ($2 fresh) replaces them, as asked; so does an image build
# (_EB_REPLACE_UNSTAMPED), which writes a layer over the base image's files.
_eb_prefixes_are_ours() {
  local var have='' stamp=$_EB_STATE/stamps/$_EB_UNIT held
  [[ -z $2 && -z ${_EB_REPLACE_UNSTAMPED:-} ]] && _eb_owns_prefixes "$1" || return 0
  [[ ! -r $stamp ]] || read -r have <"$stamp"
  for var in ${_EB_OWNPREFIXES[$1]}; do
    [[ " $have " != *" $var=${!var} "* && ( -e ${!var} || -L ${!var} ) ]] || continue
    held=$(find "${!var}" -maxdepth 1 -mindepth 1 -print -quit 2>/dev/null) || held=${!var}
    [[ -z $held && -d ${!var} ]] && continue
    printf 'envbuild: error: %s\n' "$1: $var=${!var} holds files no install of $1 made (its stamp does not record that prefix), which installing would delete; move them away, set $var to another directory, or replace them with --force $1" >&2
    _EB_WHY='its prefix holds files no install of it made'
    return 1
  done
}

# Whether the prefixes component $1 owns that exist may still be install
# prefixes once every symbolic link is followed. _eb_check_prefix compares them
# as written, without a process (the no-op path starts none), so a prefix that
# is a link to /usr, or one whose parent leads into the state dir, gets past it;
# right before an install would set them aside or write into them, each is
# resolved (realpath), as are the directories it is compared with, and compared
# again (_eb_prefix_clash). One that may not be is said on stderr, and in short
# into _EB_WHY.
_eb_resolved_prefixes() {
  local var real state='' home cache sources
  for var in ${_EB_OWNPREFIXES[$1]}; do
    [[ -e ${!var} || -L ${!var} ]] || continue
    if [[ -z $state ]]; then
      _eb_resolve state "$_EB_STATE"
      _eb_resolve home "$_EB_GUARD_HOME"
      _eb_resolve cache "$_EB_GUARD_CACHE"
      _eb_resolve sources "$_EB_GUARD_SOURCES"
    fi
    if ! real=$(realpath -m -- "${!var}" 2>&1); then
      _EB_WHY="$var cannot be resolved"
      printf 'envbuild: error: %s\n' "$1: $var='${!var}' cannot be resolved (${real##*: }), so installing cannot tell what it would replace" >&2
      return 1
    fi
    _eb_prefix_clash "$real" "$state" "$home" "$cache" "$sources" && continue
    printf 'envbuild: error: %s\n' "$1: $var='${!var}' resolves to $real, which $_EB_WHY: @PREFIX_RULE@" >&2
    _EB_WHY="$var resolves to $real"
    return 1
  done
}

# Path $2 with every symbolic link followed (realpath -m: a part that does not
# exist stays as written) into the variable named $1; $2 itself when it cannot
# be resolved, and empty for an empty $2.
_eb_resolve() {
  local path=$2
  [[ -z $path ]] || path=$(realpath -m -- "$path" 2>/dev/null) || path=$2
  printf -v "$1" '%s' "$path"
}

# Its log and work directory of component $1, into _EB_LOG and _EB_WORK.
_eb_component_paths() {
  _EB_LOG=$_EB_STATE/logs/$1.log
  # Image builds name a fixed stem: tools record the path (pip's direct_url.json), and layers must not vary.
  _EB_WORK=${_EB_WORK_STEM:-${TMPDIR:-/tmp}/envbuild.$_EB_PID}.$1
}

# Starts installing component $1: restored from the shared cache when a whole
# entry exists (unless $2 is `fresh`, as for --force NAME), else its build
# starts in the background; `restored` or the build's pid into the variable
# named $3 (`refused` when its prefixes are not its to replace, said on stderr
# and in short into _EB_WHY; `busy` with _EB_LOCK_NOWAIT, when another run
# holds the lock of its cache entry: nothing has changed). _eb_install_end finishes the build: stamped,
# then stored in the cache for other nodes (best-effort). Each install is a
# transaction (txn.sh): a failure, an interruption or a kill at any point ends
# with the previous install in place or the new one complete. Builds of several components may
# be in flight at once; every change of state is made here, in the run's main
# process, one at a time.
_eb_install_begin() {
  local name=$1 started entry='' entry_lock='' how=build platform digest snapshot=''
  _eb_key "$name"
  if ! _eb_resolved_prefixes "$name" || ! _eb_prefixes_are_ours "$name" "${2:-}"; then
    printf -v "$3" refused
    return 0
  fi
  _eb_component_paths "$name"
  : >"$_EB_LOG"
  if [[ -n $_EB_CACHE ]] && _eb_cacheable "$name"; then
    _eb_platform platform "$name"
    digest=$(printf '%s %s\n' "$_EB_KEY" "$platform" | sha256sum)
    entry=$_EB_CACHE/entries/$name-${digest:0:32}
    _eb_from_cache how "$name" "$entry" "${2:-}"
    if [[ $how == restored || $how == busy ]]; then
      _eb_unlock "$entry_lock"
      printf -v "$3" '%s' "$how"
      return 0
    fi
    [[ $how != build-store ]] || snapshot=$_EB_RUN_DIR/$name.before
  fi
  _eb_now started
  _eb_say "$name: installing (log: $_EB_LOG)"
  _eb_txn_begin "$name"
  rm -rf "$_EB_WORK"
  mkdir -p "$_EB_WORK"
  _eb_launch "$name" _eb_build "$snapshot"
  printf -v "$3" '%s' "$!"
  # Fields apart by a separator that is not blank: empty ones stay fields.
  _EB_BUILDING[$name]=$started$'\x1f'$how$'\x1f'$entry_lock$'\x1f'$entry
}

# Finishes the install of component $1, whose build ended with status $2:
# committed (and stored in the shared cache when its entry was to be), or
# rolled back and reported. Returns 1 when the build failed.
_eb_install_end() {
  local name=$1 rc=$2 started how entry_lock entry stored=''
  IFS=$'\x1f' read -r started how entry_lock entry <<<"${_EB_BUILDING[$name]}"
  unset "_EB_BUILDING[$name]"
  _eb_key "$name"
  _eb_component_paths "$name"
  _eb_point "built $name (exit $rc)"
  rm -rf "$_EB_WORK"
  _eb_elapsed "$started"
  if ((rc != 0)); then
    _eb_txn_rollback "$name"
    _eb_unlock "$entry_lock"
    _eb_report_failure "$name" "$_EB_LOG" "$rc"
    return 1
  fi
  _eb_stamp "$name"
  _eb_txn_end "$name"
  [[ $how != build-store ]] || _eb_store stored "$name" "$entry"
  _eb_unlock "$entry_lock"
  _eb_say "$name: installed in $_EB_ELAPSED s${stored:+ (stored in the shared cache)}"
}

# Installs the components named $@ (in dependency order), each as soon as those
# of its dependencies among them are installed: up to ENVBUILD_PARALLEL at a
# time, the longest chain of dependents first, sharing ENVBUILD_JOBS. A
# component gets the budget divided among those that can run now (at least 1
# job), and starts only when that much is free, unless nothing runs: the
# builds together never use more than ENVBUILD_JOBS. While builds are in
# flight, their cache entries' locks are held: a component whose entry another
# node is building (its lock busy) lets the others go first rather than wait
# for that lock (two nodes each waiting for the other's lock would never end);
# with nothing else to do, it waits for the lock. A failure stops the
# components that depend on it; the others go on. Reads _eb_main's `fresh`;
# counts into its `installed`, and names what failed or was stopped in its
# `failures`. Waiting is `wait -n` (bash 4.3; older bash builds one at a time).
_eb_schedule() {
  local name dep jobs parallel free running=0 share rc pid outcome settled ready=() chosen
  local -A state=() height=() pids=() shares=() later=()
  jobs=${ENVBUILD_JOBS:-$(nproc)}
  _eb_setting parallel ENVBUILD_PARALLEL
  parallel=${parallel:-$jobs}
  ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] >= 403)) || parallel=1
  free=$jobs
  for name in "$@"; do
    state[$name]=queued height[$name]=1
  done
  # The longest chain of dependents among them (in components), from the end of the order.
  for ((rc = $# ; rc >= 1; rc--)); do
    name=${!rc}
    for dep in ${_EB_DEPS[$name]}; do
      [[ -z ${state[$dep]:-} ]] || ((${height[$dep]} > ${height[$name]})) || height[$dep]=$((${height[$name]} + 1))
    done
  done
  while :; do
    ready=()
    # What waited for others: with none left in flight, it may wait for its lock.
    ((running)) || later=()
    for name in "$@"; do
      [[ ${state[$name]} == queued && -z ${later[$name]:-} ]] || continue
      outcome=ready
      for dep in ${_EB_DEPS[$name]}; do
        case ${state[$dep]:-installed} in
          installed) ;;
          failed) outcome="it needs $dep, which failed" && break ;;
          stopped) outcome="it needs $dep, which is not installed" && break ;;
          *) outcome=waiting ;;
        esac
      done
      if [[ $outcome == ready ]]; then
        ready+=("$name")
      elif [[ $outcome != waiting ]]; then
        state[$name]=stopped
        failures+=("$name ($outcome)")
        printf 'envbuild: error: %s is not installed: %s\n' "$name" "$outcome" >&2
      fi
    done
    settled=''
    while ((${#ready[@]} && running < parallel)); do
      chosen=0
      for ((rc = 1; rc < ${#ready[@]}; rc++)); do
        ((${height[${ready[rc]}]} <= ${height[${ready[chosen]}]})) || chosen=$rc
      done
      name=${ready[chosen]}
      share=$((jobs / (running + ${#ready[@]} < parallel ? running + ${#ready[@]} : parallel)))
      ((share >= 1)) || share=1
      ((share <= free)) || share=$free
      # Nothing free: wait for a build to end (when none runs, all is free).
      ((share >= 1)) || break
      ready=("${ready[@]:0:chosen}" "${ready[@]:chosen+1}")
      # Not waiting for its entry's lock while anything else can go on.
      _EB_SHARE=$share _EB_LOCK_NOWAIT=${pids[*]:+1}
      ((${#ready[@]} == 0)) || _EB_LOCK_NOWAIT=1
      _eb_install_begin "$name" "${fresh[$name]:+fresh}" pid
      _EB_SHARE='' _EB_LOCK_NOWAIT=''
      if [[ $pid == busy ]]; then
        later[$name]=1
        _eb_say "$name: another run builds it for the shared cache; installing others meanwhile"
        continue
      elif [[ $pid == restored ]]; then
        state[$name]=installed settled=1
        ((installed += 1))
        continue
      elif [[ $pid == refused ]]; then
        state[$name]=failed settled=1
        failures+=("$name ($_EB_WHY)")
        continue
      fi
      state[$name]=running pids[$name]=$pid shares[$name]=$share
      free=$((free - share)) running=$((running + 1))
    done
    # What was restored or refused may have let others start, or stopped them.
    [[ -z $settled ]] || continue
    ((running || ${#later[@]})) || break
    ((running)) || continue
    # Any build's end; then each that ended, in the order they were started.
    wait -n || :
    for name in "$@"; do
      [[ ${state[$name]} == running ]] || continue
      pid=${pids[$name]}
      ! kill -0 "$pid" 2>/dev/null || continue
      rc=0
      wait "$pid" || rc=$?
      unset "pids[$name]"
      later=()
      free=$((free + ${shares[$name]})) running=$((running - 1))
      if _eb_install_end "$name" "$rc"; then
        state[$name]=installed
        ((installed += 1))
      else
        state[$name]=failed
        failures+=("$name (exit $rc; log: $_EB_LOG)")
      fi
    done
  done
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
  ENVBUILD_JOBS          build jobs of the node, shared by the components built at once;
                         \$EB_JOBS in steps (default: nproc)
  ENVBUILD_PARALLEL      components built at once, at most (default: ENVBUILD_JOBS)
  ENVBUILD_CACHE_DIR     shared build cache of the cluster (default: none)
  ENVBUILD_LOCK_TIMEOUT  seconds to wait for a lock before giving up (default ${_EB_SETTINGS[ENVBUILD_LOCK_TIMEOUT]})
  ENVBUILD_LOCK_HEARTBEAT  seconds between a lock holder's touches of its note (default ${_EB_SETTINGS[ENVBUILD_LOCK_HEARTBEAT]})
  ENVBUILD_DOWNLOAD_CONNECT_TIMEOUT  seconds a download or git may take to connect (default ${_EB_SETTINGS[ENVBUILD_DOWNLOAD_CONNECT_TIMEOUT]})
  ENVBUILD_DOWNLOAD_STALL_TIMEOUT  seconds without data before an attempt fails (default ${_EB_SETTINGS[ENVBUILD_DOWNLOAD_STALL_TIMEOUT]})
  ENVBUILD_DOWNLOAD_TIMEOUT  seconds a download or git fetch may take, retries included (default ${_EB_SETTINGS[ENVBUILD_DOWNLOAD_TIMEOUT]})
  ENVBUILD_DOWNLOAD_RETRIES  attempts after a failure that may pass (default ${_EB_SETTINGS[ENVBUILD_DOWNLOAD_RETRIES]}; waits 1, 2, 4... s)
  ENVBUILD_TEST_CRASH_AT  tests only: N:SIGNAL:main|group, the run signals itself at its Nth change of state
  ENVBUILD_TEST_TRACE    tests only: a file the run appends its changes of state to
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

# "1 component" or "N components" for N=$2, into the variable named $1.
_eb_components() {
  if (($2 == 1)); then printf -v "$1" '1 component'; else printf -v "$1" '%d components' "$2"; fi
}

# Of $1 components, $2 skipped: the others are present.
_eb_say_all_present() {
  local skipped='' present
  (($2 == 0)) || skipped=", $2 skipped"
  _eb_components present $(($1 - $2))
  (($1 - $2 < 2)) || present="all $present"
  _eb_say "$present present$skipped ($_EB_ELAPSED s)"
}

_eb_known() {
  [[ -n ${_EB_HASH[$1]:-} ]] || _eb_usage_error "unknown component '$1' (components: ${_EB_ORDER[*]})"
}

# What an installing run does once, before its first change: its settings are
# checked, the install lock taken, signals trapped, what killed runs left
# finished and swept.
_eb_start_installing() {
  local lock_fd why
  trap '_eb_on_signal INT 130' INT
  trap '_eb_on_signal TERM 143' TERM
  trap _eb_on_exit EXIT
  why=$(mkdir -p "$_EB_STATE/stamps" "$_EB_STATE/logs" 2>&1) \
    || _eb_die "cannot create the state dir $_EB_STATE (ENVBUILD_STATE_DIR): ${why##*: }"
  if _eb_lock lock_fd "$_EB_STATE/install.lock" "installing into $_EB_STATE"; then
    _EB_INSTALL_LOCKED=1
  fi
  _eb_cache_dir
  _eb_sweep
  mkdir -p "$_EB_RUN_DIR"
}

_eb_main() {
  local mode=install name dep started note locked='' prepared=''
  local -A only=() force=() fresh=() reinstalled=()
  local installed=0 present=0 skipped=0 outstanding=0 total=${#_EB_ORDER[@]} queue=() failures=() of_total
  _eb_now started
  _EB_PID=$BASHPID
  while (($#)); do
    case $1 in
      -h | --help) _eb_usage; return 0 ;;
      --version) _eb_version; return 0 ;;
      --check) mode=check ;;
      --list) mode=list ;;
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
  _eb_check_settings
  [[ $mode != list ]] || { _eb_list; return 0; }
  if [[ $mode == install ]]; then
    _EB_RUN_DIR=$_EB_STATE/run.$_EB_PID
    # What a killed run left is finished and swept before any stamp is read.
    if _eb_pending; then
      locked=1
      _eb_start_installing
    fi
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
      _eb_txn_note note "$name"
      _eb_say "$name: ${force[$name]:+forced, }$_EB_STATUS$note"
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
    if [[ -z $prepared ]]; then
      # Only installers check needs and take the lock; the no-op path above never does.
      prepared=1
      _eb_preflight
      if [[ -z $locked ]]; then
        locked=1
        _eb_start_installing
      fi
      # Another run may have installed it while this one waited (and the
      # preflight's statuses have set _EB_KEY to another component's).
      _eb_status "$name"
      if [[ $_EB_STATUS == present && -z ${force[$name]:-} ]]; then
        [[ -n ${_EB_RECOVERED[$name]:-} ]] || _eb_say "$name: installed meanwhile by another run"
        ((present += 1))
        continue
      fi
    fi
    queue+=("$name")
    reinstalled[$name]=1
  done
  _eb_components of_total "$total"
  case $mode in
    env)
      _eb_apply_recipe_env
      _eb_print_exports
      return 0
      ;;
    check)
      _eb_elapsed "$started"
      if ((outstanding)); then
        _eb_say "$outstanding of $of_total to install ($_EB_ELAPSED s)"
        return 3
      fi
      _eb_say_all_present "$total" "$skipped"
      return 0
      ;;
  esac
  ((${#queue[@]} == 0)) || _eb_schedule "${queue[@]}"
  [[ ! -e $_EB_RUN_DIR ]] || rm -rf "$_EB_RUN_DIR"
  _eb_elapsed "$started"
  if ((${#failures[@]})); then
    printf -v name '; %s' "${failures[@]}"
    _eb_say "installed $installed, present $present, skipped $skipped, not installed ${#failures[@]} of $of_total ($_EB_ELAPSED s)"
    printf 'envbuild: error: not installed: %s\n' "${name#; }" >&2
    return 1
  elif ((installed)); then
    local cache=''
    [[ -z $_EB_CACHE ]] || cache=" (shared cache: $_EB_RESTORED restored, $_EB_STORED stored)"
    _eb_say "installed $installed$cache, present $present, skipped $skipped of $of_total ($_EB_ELAPSED s)"
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
