# ---- helpers for install steps (they run inside the step's subshell) ----

_eb_apt() {
  local package status missing=() offline=()
  for package in "$@"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "${package%%=*}" 2>/dev/null) || status=''
    [[ $status == "ii "* ]] || missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  ((EUID == 0)) || _eb_die "apt packages missing: ${missing[*]}; run as root or install them first"
  [[ -z ${ENVBUILD_SOURCE_DIR:-} ]] || _eb_offline_apt offline
  if [[ ! -e $_EB_RUN_DIR/apt-updated ]]; then
    apt-get "${offline[@]}" update -q
    : >"$_EB_RUN_DIR/apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get "${offline[@]}" install -y -q --no-install-recommends "${missing[@]}"
}

# apt options, into the array named $1, with which apt sees the packages of the
# offline sources' apt/ only (`envbuild fetch --apt`: a flat repository of the
# .debs the base image lacks): a source list, package lists and a cache of its
# own in the run's directory, so the system's sources are neither asked nor
# changed and no copy of a .deb stays behind.
_eb_offline_apt() {
  local -n _eb_options=$1
  local root=$_EB_RUN_DIR/apt-offline uri
  _eb_sources
  uri=$_EB_SOURCES/apt
  [[ -n $_EB_SOURCES_URL ]] || uri=file:$uri
  [[ -n $_EB_SOURCES_URL || -f $_EB_SOURCES/apt/Packages ]] ||
    _eb_die "ENVBUILD_SOURCE_DIR has no apt packages (no apt/Packages); run envbuild fetch --apt"
  mkdir -p "$root/lists/partial" "$root/cache/archives/partial"
  printf 'deb [trusted=yes] %s ./\n' "$uri" >"$root/sources.list"
  _eb_options=(-o "Dir::Etc::SourceList=$root/sources.list" -o Dir::Etc::SourceParts=- -o "Dir::State::Lists=$root/lists"
    -o "Dir::Cache=$root/cache" -o Acquire::Languages=none)
}

# _eb_pip [pip options...] requirements...: the image is ours to manage, so pip
# may install over distro packages and as root. With ENVBUILD_SOURCE_DIR, pip
# takes packages (and the build requirements of what it builds) from its pip/
# only. The base image's protected distributions (the recipe's
# python.protected, with what they require, at their installed versions)
# constrain the install, so it cannot replace them; when it would, the step
# fails naming the package and both versions.
_eb_pip() {
  local offline=() constraints=() args=() replaced=() option previous='' deps=1 reinstall='' status=0
  local guard=$_EB_WORK/pip-guard
  if [[ -n ${ENVBUILD_SOURCE_DIR:-} ]]; then
    # Build requirements too: pip passes both options on to the isolated build environments.
    _eb_sources
    offline=(--no-index --find-links "$_EB_SOURCES/pip/")
  fi
  if [[ -n ${_EB_PROTECTED[$_EB_NAME]:-} ]]; then
    mkdir -p "$guard"
    for option in "$@"; do
      case $option in
        --no-deps) deps='' ;;
        --force-reinstall | --ignore-installed | -I) reinstall=$option ;;
      esac
      # A requirements file read from a pipe (-r <(...)) is kept: pip may have to read it twice.
      if [[ ($previous == -r || $previous == --requirement) && -e $option && ! -f $option ]]; then
        cat "$option" >"$guard/requirements.${#args[@]}.txt"
        option=$guard/requirements.${#args[@]}.txt
      fi
      args+=("$option")
      previous=$option
    done
    [[ -z $reinstall || -z $deps ]] ||
      _eb_die "pip $reinstall would reinstall every dependency too, the base image's protected ones (python.protected: ${_EB_PROTECTED[$_EB_NAME]}) included; add --no-deps"
    # shellcheck disable=SC2086 # the protected names are words
    _eb_pipguard constraints ${_EB_PROTECTED[$_EB_NAME]} >"$guard/constraints.txt"
    constraints=(-c "$guard/constraints.txt")
    set -- "${args[@]}"
  fi
  _eb_pip_install "${offline[@]}" "${constraints[@]}" "$@" 2>&1 | tee "$guard.out" || status=$?
  ((status != 0)) || return 0
  # Say which protected distribution the install would replace: ask pip, without the constraints.
  if ((${#constraints[@]})) && [[ $(<"$guard.out") == *ResolutionImpossible* ]] &&
    _eb_pip_install --dry-run --quiet --report "$guard/report.json" "${offline[@]}" "$@" >/dev/null 2>&1; then
    _eb_pipguard replaced "$guard/constraints.txt" "$guard/report.json" >"$guard/replaced.txt" || {
      mapfile -t replaced <"$guard/replaced.txt"
      printf -v option '; %s' "${replaced[@]}"
      _eb_die "pip may not replace the base image's Python distributions: ${option#; }"
    }
  fi
  return "$status"
}

# _eb_pip_indexed N [pip options...] requirements...: _eb_pip for a recipe's pip
# group whose first N words are its package index options (--index-url,
# --find-links, ... with their values; envbuild picks them when it renders the
# script). With ENVBUILD_SOURCE_DIR they are left out: the fetched pip/ replaces
# every index, and pip must not try to reach one (it retries one that is down).
_eb_pip_indexed() {
  local count=$1
  shift
  if [[ -n ${ENVBUILD_SOURCE_DIR:-} ]]; then
    shift "$count"
  fi
  _eb_pip "$@"
}

# _eb_pip_into DIR [pip options...] requirements...: like _eb_pip, into DIR (a
# directory under one of the component's prefixes, which its env puts on
# PYTHONPATH) instead of the Python's site-packages, which every component
# shares: builds of one component for several NIC families then live side by
# side, and an image builds it in a stage of its own. Only what is named is
# installed (--no-deps): what it requires comes from the base image or an
# earlier component. --upgrade replaces what DIR already holds of it. pip
# compiles in its temporary directory, whose name the bytecode would keep (and
# an image's layers would differ): the bytecode is compiled in DIR instead (a
# file that does not compile stays without, as pip leaves it).
_eb_pip_into() {
  local dir=$1
  shift
  _eb_pip --target "$dir" --upgrade --no-deps --no-compile "$@"
  "$EB_PYTHON" -m compileall -q "$dir" >/dev/null || :
}

# _eb_pip_base NAME==VERSION...: what a locked pip group takes from the base image,
# at the versions the image it was locked against had. Other versions here mean the
# lock was made for another base image: the step fails saying which, rather than
# install packages resolved against what is not there.
_eb_pip_base() {
  local guard=$_EB_WORK/pip-guard differ=() status=0 line
  mkdir -p "$guard"
  _eb_pipguard expect "$@" >"$guard/base.txt" || status=$?
  ((status != 0)) || return 0
  mapfile -t differ <"$guard/base.txt"
  ((${#differ[@]})) || _eb_die "the pip guard could not read the base image's Python distributions (exit $status)"
  printf -v line ', %s' "${differ[@]}"
  _eb_die "the lock was made for another base image, which had ${line#, }; lock the recipe again against this one"
}

# pip into the Python's site-packages, which every component shares, holds the
# node's pip lock (components built at the same time never run two such pips at
# once); pip --target into a component's own directory (_eb_pip_into) does not.
_eb_pip_install() {
  local lock=pip
  [[ " $* " != *" --target "* ]] || lock=''
  _eb_exclusive "$lock" env PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$EB_PYTHON" -m pip install --no-input "$@"
}

# Runs command ARGS... (a program, never a step or a helper: it runs where
# errexit is off) holding the run's lock named $1 (apt: apt-get and dpkg; pip:
# pip into site-packages; none when empty), and returns its status.
_eb_exclusive() {
  local fd='' rc=0
  [[ -z $1 ]] || _eb_lock fd "$_EB_RUN_DIR/$1.lock" "$1 for $_EB_NAME" || :
  "${@:2}" || rc=$?
  _eb_unlock "$fd"
  return "$rc"
}

# Clones repository $1 at commit $2 into ./src (submodules if $3 is 1) and enters
# it; with ENVBUILD_SOURCE_DIR, from the mirror $4 that `envbuild fetch` put there
# (submodules and meson wraps from theirs, see _eb_offline_git).
# An unpinned source (no commit, branch $5) gets the branch's tip, with a warning.
_eb_git() {
  local url=$1 commit=$2 origin=$1 head rc=0
  [[ -z ${ENVBUILD_SOURCE_DIR:-} ]] || _eb_offline_git "$url" "$4"
  git init -q src
  cd src
  git remote add origin "$origin"
  if [[ -z $commit ]]; then
    _eb_warn "$url is not pinned: installing the tip of branch $5 (envbuild lock pins it)"
    _eb_git_net fetch -q --depth 1 origin "refs/heads/$5"
    git -c advice.detachedHead=false checkout -q FETCH_HEAD
    EB_SRC=$PWD
    return 0
  fi
  _eb_git_net fetch -q --depth 1 origin "$commit" || rc=$?
  if ((rc == 1)); then
    _eb_say "fetching $commit by itself failed; fetching all branches and tags of $origin"
    _eb_git_net fetch -q --tags origin '+refs/heads/*:refs/remotes/origin/*'
  elif ((rc != 0)); then
    _eb_die "$url: fetching $commit failed"
  fi
  git -c advice.detachedHead=false checkout -q "$commit"
  head=$(git rev-parse HEAD)
  [[ $head == "$commit" ]] || _eb_die "$url: checked out $head, expected the pinned commit $commit"
  if [[ $3 == 1 ]]; then
    _eb_git_net submodule update -q --init --recursive
  fi
  [[ -z ${ENVBUILD_SOURCE_DIR:-} ]] || _eb_offline_wraps
  EB_SRC=$PWD
}

# Sends git URL $1 (mirror $2) and every URL `envbuild fetch` mirrored
# (git/urls: submodules, the repositories of meson wraps) to the offline
# mirrors, for git in this step and in what the step runs (setup.py or meson
# cloning submodules themselves): GIT_CONFIG_COUNT settings reach submodule
# clones, which -c and repository settings do not. Mirrors in a directory are
# local paths, which git refuses for submodules unless protocol.file is allowed.
_eb_offline_git() {
  local url=$1 list=$_EB_WORK/envbuild-git-urls name from count=${GIT_CONFIG_COUNT:-0}
  _eb_sources
  if ! _eb_source_get git/urls "$list" 2>/dev/null; then
    [[ -n $_EB_SOURCES_URL || -d $_EB_SOURCES/git/$2.git ]] ||
      _eb_die "$url is not in ENVBUILD_SOURCE_DIR (no git/$2.git); run envbuild fetch"
    : >"$list"
  fi
  printf '%s %s\n' "$2" "$url" >>"$list"
  while read -r name from; do
    export "GIT_CONFIG_KEY_$count=url.$_EB_SOURCES/git/$name.git.insteadOf" "GIT_CONFIG_VALUE_$count=$from"
    ((count += 1))
  done <"$list"
  if [[ -z $_EB_SOURCES_URL ]]; then
    export "GIT_CONFIG_KEY_$count=protocol.file.allow" "GIT_CONFIG_VALUE_$count=always"
    ((count += 1))
  fi
  export GIT_CONFIG_COUNT=$count
}

# Puts the archives the meson wraps of ./subprojects name (source_filename,
# patch_filename) into subprojects/packagecache/, where meson looks before it
# downloads, from the offline sources' meson/packagecache/ (a wrap the sources
# lack is left to meson, which says which).
_eb_offline_wraps() {
  local wrap key file
  for wrap in subprojects/*.wrap; do
    [[ -f $wrap ]] || continue
    while IFS=' =' read -r key file; do
      [[ $key == source_filename || $key == patch_filename ]] || continue
      [[ -n $file && $file != */* ]] || continue
      mkdir -p subprojects/packagecache
      [[ -f subprojects/packagecache/$file ]] ||
        _eb_source_get "meson/packagecache/$file" "subprojects/packagecache/$file" 2>/dev/null || :
    done <"$wrap"
  done
}

# Where the offline sources are, into _EB_SOURCES (without a trailing /), and
# _EB_SOURCES_URL=1 when that is an http(s):// URL (a directory `envbuild image
# --sources` serves to the build).
_eb_sources() {
  _EB_SOURCES=${ENVBUILD_SOURCE_DIR%/} _EB_SOURCES_URL=''
  case $_EB_SOURCES in
    http://* | https://*) _EB_SOURCES_URL=1 ;;
    /*) [[ -d $_EB_SOURCES ]] || _eb_die "ENVBUILD_SOURCE_DIR $_EB_SOURCES is not a directory" ;;
    *) _eb_die "ENVBUILD_SOURCE_DIR must be an absolute directory or an http(s):// URL, not $ENVBUILD_SOURCE_DIR" ;;
  esac
}

# Copies file $1 of the offline sources (a path relative to them) to file $2; fails when it is not there.
_eb_source_get() {
  local base failure
  _eb_sources
  base=$_EB_SOURCES
  if [[ -n $_EB_SOURCES_URL ]]; then
    ENVBUILD_SOURCE_DIR='' _eb_fetch_url failure "$base/$1" "$2"
  else
    [[ -f $base/$1 ]] && cp "$base/$1" "$2"
  fi
}

# Runs `git ARGS...` (a command that talks to the origin) within the download
# bounds: over HTTP(S) a transfer stalls out after ENVBUILD_DOWNLOAD_STALL_TIMEOUT
# and the origin must accept a connection (checked first with curl, as git has
# no setting for it) within ENVBUILD_DOWNLOAD_CONNECT_TIMEOUT; over SSH the same
# through ssh's options; all attempts end after ENVBUILD_DOWNLOAD_TIMEOUT.
# Failures that look passing (no connection, a reset, HTTP 408, 429, 5xx) are
# tried again like downloads (_eb_fetch_url); a timeout is not. Returns 1 when
# git failed by itself (say, a commit the origin will not serve alone), 2 when
# the network did. Runs where errexit is off (`||`): every status is handled here.
_eb_git_net() {
  local connect stall total retries attempt=0 delay=1 start clock left rc verdict err origin answer
  _eb_setting connect ENVBUILD_DOWNLOAD_CONNECT_TIMEOUT
  _eb_setting stall ENVBUILD_DOWNLOAD_STALL_TIMEOUT
  _eb_setting total ENVBUILD_DOWNLOAD_TIMEOUT
  _eb_setting retries ENVBUILD_DOWNLOAD_RETRIES
  _eb_now start
  origin=$(git ls-remote --get-url origin 2>/dev/null) || origin=''
  while :; do
    ((attempt += 1))
    _eb_now clock
    left=$((total - (clock - start) / 1000000))
    rc=0 verdict=ok err=''
    if ((left <= 0)); then
      verdict=network err="not done within ENVBUILD_DOWNLOAD_TIMEOUT ($total s)"
    elif [[ $origin == http://* || $origin == https://* ]] && command -v curl >/dev/null; then
      # What answered: the HTTP status (000: none) and the time the connection took (0: none).
      answer=$(curl -sS -o /dev/null -w '%{http_code} %{time_connect}' --connect-timeout "$connect" \
        --max-time "$((connect + stall < left ? connect + stall : left))" "$origin/info/refs?service=git-upload-pack") ||
        rc=$?
      if ((rc == 6 || rc == 7)); then
        verdict=retry err="cannot connect to $origin"
      elif ((rc == 28)) && [[ $answer == 000* ]]; then
        verdict=network err="no connection to $origin within $connect s (ENVBUILD_DOWNLOAD_CONNECT_TIMEOUT)"
        answer=${answer#* }
        [[ ${answer//[0.]/} == '' ]] ||
          err="$origin accepted the connection and sent nothing for $stall s (ENVBUILD_DOWNLOAD_STALL_TIMEOUT)"
      fi
      _eb_now clock
      left=$((total - (clock - start) / 1000000))
      ((left > 0)) || verdict=network err="not done within ENVBUILD_DOWNLOAD_TIMEOUT ($total s)"
    fi
    if [[ $verdict == ok ]]; then
      rc=0
      { err=$(GIT_HTTP_LOW_SPEED_LIMIT=1 GIT_HTTP_LOW_SPEED_TIME=$stall \
        GIT_SSH_COMMAND=${GIT_SSH_COMMAND:-ssh -o ConnectTimeout=$connect -o ServerAliveInterval=$stall -o ServerAliveCountMax=1} \
        timeout -k 5 "$left" git "$@" 2>&1 >&3); } 3>&1 || rc=$?
      if ((rc == 124 || rc == 137)); then
        verdict=network err+="${err:+$'\n'}not done within ENVBUILD_DOWNLOAD_TIMEOUT ($total s)"
      elif [[ $err =~ (too slow|timed out|Timeout) ]]; then
        verdict=network
      elif [[ $err =~ (Could not resolve host|Failed to connect|Connection refused|Connection reset|returned\ error:\ (5[0-9][0-9]|408|429)|early EOF|RPC failed|unexpected disconnect|hung up unexpectedly) ]]; then
        verdict=retry
      elif ((rc != 0)); then
        verdict=git
      fi
    fi
    [[ -z $err ]] || printf '%s\n' "$err" >&2
    case $verdict in
      ok) return 0 ;;
      git) return 1 ;;
      network) return 2 ;;
    esac
    _eb_now clock
    if ((attempt > retries || (clock - start) / 1000000 + delay >= total)); then
      return 2
    fi
    _eb_say "git $1 from $origin failed; trying again in $delay s (attempt $((attempt + 1)) of $((retries + 1)))"
    sleep "$delay"
    delay=$((delay * 2))
  done
}

# Fetches URL $2 to file $3; why it failed goes into the variable named $1
# (status 1). With ENVBUILD_SOURCE_DIR, copies the file from its downloads/.
# Each attempt (curl, else wget, else Python) must connect within
# ENVBUILD_DOWNLOAD_CONNECT_TIMEOUT and fails when no data comes for
# ENVBUILD_DOWNLOAD_STALL_TIMEOUT; all attempts end after ENVBUILD_DOWNLOAD_TIMEOUT.
# A failure that may pass (no connection, a reset, HTTP 408, 429 or 5xx, a
# transfer cut off after data came) is tried again, up to ENVBUILD_DOWNLOAD_RETRIES
# times after 1, 2, 4... s; a timeout with nothing received is not (a server
# that hangs would hold every node waiting on this run's locks as long again),
# nor another HTTP error. Runs where errexit is off (`||`): every status is handled here.
_eb_fetch_url() {
  local url=$2 file=$3 total retries attempt=0 delay=1 start clock verdict why
  printf -v "$1" ''
  if [[ -n ${ENVBUILD_SOURCE_DIR:-} ]]; then
    if ! _eb_source_get "downloads/${url##*/}" "$file"; then
      printf -v "$1" 'it is not in ENVBUILD_SOURCE_DIR (no downloads/%s); run envbuild fetch' "${url##*/}"
      return 1
    fi
    return 0
  fi
  _eb_setting total ENVBUILD_DOWNLOAD_TIMEOUT
  _eb_setting retries ENVBUILD_DOWNLOAD_RETRIES
  _eb_now start
  while :; do
    ((attempt += 1))
    _eb_now clock
    _eb_fetch_once verdict why "$url" "$file" "$((total * 1000000 - (clock - start)))"
    [[ $verdict != ok ]] || return 0
    _eb_now clock
    if [[ $verdict == final ]] || ((attempt > retries || (clock - start) / 1000000 + delay >= total)); then
      printf -v "$1" '%s' "$why"
      ((attempt == 1)) || printf -v "$1" '%s (%s attempts)' "$why" "$attempt"
      return 1
    fi
    _eb_say "$url: $why; trying again in $delay s (attempt $((attempt + 1)) of $((retries + 1)))"
    sleep "$delay"
    delay=$((delay * 2))
  done
}

# One attempt at fetching URL $3 to file $4 within $5 microseconds: ok, retry
# or final into the variable named $1, what happened into the one named $2. The
# tools' outcomes are read as curl's exit statuses (22: HTTP error, 28: timeout).
_eb_fetch_once() {
  local url=$3 file=$4 left=$((($5 + 999999) / 1000000)) connect stall rc=0 code='' err start clock
  _eb_setting connect ENVBUILD_DOWNLOAD_CONNECT_TIMEOUT
  _eb_setting stall ENVBUILD_DOWNLOAD_STALL_TIMEOUT
  rm -f "$file"
  _eb_now start
  if ((left <= 0)); then
    rc=28
  elif command -v curl >/dev/null; then
    code=$(curl -sSLf --connect-timeout "$connect" --speed-limit 1 --speed-time "$stall" --max-time "$left" \
      -w '%{http_code}' -o "$file" "$url") || rc=$?
  elif command -v wget >/dev/null; then
    { err=$(timeout -k 5 "$left" wget -nv --tries=1 --connect-timeout="$connect" --dns-timeout="$connect" \
      --read-timeout="$stall" -O "$file" "$url" 2>&1 >&3); } 3>&1 || rc=$?
    printf '%s\n' "$err" >&2
    case $rc in
      8) rc=22 code=${err##*ERROR } code=${code:0:3} ;;
      4)
        _eb_now clock
        rc=$(((clock - start) / 1000000 < (connect < stall ? connect : stall) ? 7 : 28))
        ;;
      124 | 137) rc=28 ;;
    esac
  else
    code=$(timeout -k 5 "$left" "$EB_PYTHON" -c '
import shutil, socket, sys, urllib.error, urllib.request
url, path, connect, stall = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
try:
    with urllib.request.urlopen(url, timeout=connect) as response, open(path, "wb") as out:
        # connect went by the connect timeout; the body goes by the stall timeout
        sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
        if sock is not None:
            sock.settimeout(stall)
        shutil.copyfileobj(response, out)
except urllib.error.HTTPError as error:
    print(error.code)
    sys.exit(22)
except (socket.timeout, urllib.error.URLError, OSError) as error:
    print(error, file=sys.stderr)
    timed_out = isinstance(error, socket.timeout) or isinstance(getattr(error, "reason", None), socket.timeout)
    sys.exit(28 if timed_out else 7)
' "$url" "$file" "$connect" "$stall") || rc=$?
    ((rc != 124 && rc != 137)) || rc=28
  fi
  case $rc in
    0) printf -v "$1" ok ;;
    22)
      printf -v "$2" 'HTTP status %s' "$code"
      case $code in
        408 | 429 | 5??) printf -v "$1" retry ;;
        *) printf -v "$1" final ;;
      esac
      return 0
      ;;
    28)
      _eb_now clock
      if ((clock - start >= left * 1000000)); then
        printf -v "$2" 'not done within ENVBUILD_DOWNLOAD_TIMEOUT'
        printf -v "$1" final
      elif [[ -s $file ]]; then
        printf -v "$2" 'no data for %s s after the transfer began' "$stall"
        printf -v "$1" retry
      else
        printf -v "$2" 'no answer within %s s (ENVBUILD_DOWNLOAD_CONNECT_TIMEOUT) or %s s (ENVBUILD_DOWNLOAD_STALL_TIMEOUT)' "$connect" "$stall"
        printf -v "$1" final
      fi
      return 0
      ;;
    3 | 60 | 77) printf -v "$1" final ;;
    *) printf -v "$1" retry ;;
  esac
  printf -v "$2" 'the download failed (exit %s)' "$rc"
}

# The sha256 of file $2, into the variable named $1.
_eb_sha256() {
  local sum
  sum=$(sha256sum "$2")
  printf -v "$1" '%s' "${sum%% *}"
}

# Downloads $1 to ./$3, checks it against sha256 $2 (or reports it when unknown).
# With the shared cache, a verified download is kept as downloads/<sha256> (written
# to a temporary name, then renamed) and reused by the other nodes, checked again
# first; one node downloads while the others wait. Unverified downloads are not kept.
_eb_download() {
  local url=$1 expected=$2 file=$3 actual cached='' lock_fd='' tmp failure
  if [[ -n $_EB_CACHE && $expected != unknown ]]; then
    cached=$_EB_CACHE/downloads/$expected
    [[ -n $_EB_CACHE_RO ]] || _eb_lock lock_fd "$_EB_CACHE/locks/download-$expected.lock" "downloading $url" || :
    if [[ -f $cached ]] && cp "$cached" "$file.part"; then
      _eb_sha256 actual "$file.part"
      if [[ $actual == "$expected" ]]; then
        _eb_unlock "$lock_fd"
        mv -f "$file.part" "$file"
        EB_DOWNLOAD=$PWD/$file
        _eb_say "$url: verified copy from the shared cache ($cached)"
        return 0
      fi
      _eb_warn "$cached does not match its sha256 (it has $actual); downloading $url again"
      [[ -n $_EB_CACHE_RO ]] || rm -f "$cached"
    fi
  fi
  _eb_fetch_url failure "$url" "$file.part" || _eb_die "download of $url failed: $failure"
  _eb_sha256 actual "$file.part"
  if [[ $expected == unknown ]]; then
    _eb_warn "$url is unverified (no sha256 in the recipe); its sha256 is $actual"
  elif [[ $actual != "$expected" ]]; then
    _eb_die "sha256 mismatch for $url: expected $expected, got $actual"
  fi
  if [[ -n $cached && -z $_EB_CACHE_RO ]]; then
    tmp=$_EB_CACHE/tmp/download-$expected.${HOSTNAME:-unknown}.$_EB_PID
    if cp "$file.part" "$tmp" && mv -f "$tmp" "$cached"; then
      _eb_say "$url: stored in the shared cache ($cached)"
    else
      rm -f "$tmp"
      _eb_warn "could not store $url in the shared cache ($cached)"
    fi
    _eb_unlock "$lock_fd"
  fi
  mv -f "$file.part" "$file"
  EB_DOWNLOAD=$PWD/$file
}

# Succeeds when Debian package $1 is installed at exactly version $2.
_eb_deb_installed() {
  local status
  status=$(dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null) || status=''
  [[ $status == "install ok installed $2" ]] || _eb_die "$1 $2 is not installed (dpkg says: ${status:-not known})"
}

# Makes provider library lib$1.so findable by the step's build (CMake's
# find_library, the linker): builds such as MoRI's compile support for a
# provider in only when its unversioned name is installed, and runtime
# packages (libionic1) ship only lib$1.so.N. When only that is installed, it
# is linked as lib$1.so in a directory of the step's own, on CMAKE_LIBRARY_PATH
# and LIBRARY_PATH, so nothing outside the step changes. Fails when neither is
# installed, instead of letting the build leave the support out.
_eb_provider_library() {
  local dir found='' dirs=("/usr/lib/$HOSTTYPE-linux-gnu" "/lib/$HOSTTYPE-linux-gnu" /usr/lib64 /usr/lib /usr/local/lib)
  for dir in "${dirs[@]}"; do
    [[ ! -e $dir/lib$1.so ]] || return 0
  done
  for dir in "${dirs[@]}"; do
    for found in "$dir/lib$1.so."[0-9]*; do
      [[ -e $found ]] && break 2
      found=''
    done
  done
  [[ -n $found ]] ||
    _eb_die "$_EB_NAME needs lib$1.so or lib$1.so.N (in ${dirs[*]}) for NIC family ${EB_NIC_FAMILY:-?}: the base image, or a component before $_EB_NAME, must provide it"
  mkdir -p "$_EB_WORK/provider-libs"
  ln -sfn "$found" "$_EB_WORK/provider-libs/lib$1.so"
  export CMAKE_LIBRARY_PATH=$_EB_WORK/provider-libs${CMAKE_LIBRARY_PATH:+:$CMAKE_LIBRARY_PATH}
  export LIBRARY_PATH=$_EB_WORK/provider-libs${LIBRARY_PATH:+:$LIBRARY_PATH}
  _eb_say "$_EB_NAME: $found is found as lib$1.so (linked in $_EB_WORK/provider-libs)"
}
