# ---- what components take from the base image (their `needs`) ----

# Before the first install of a run: the needs of every component this run will
# install (what _eb_main's loop decides: not present, forced, or depending on
# one that is; within --only), all checked at once, so that a base image
# without hipify-perl fails in milliseconds rather than after UCX's build.
# Reads _eb_main's `only` and `force`. Dies naming everything missing.
_eb_preflight() {
  local name dep id include python=${ENVBUILD_PYTHON:-python3} missing who
  local -A todo=()
  _EB_MISSING=() _EB_NEEDS_PYTHON=()
  for name in "${_EB_ORDER[@]}"; do
    if ((${#only[@]})) && [[ -z ${only[$name]:-} ]]; then continue; fi
    _eb_applies "$name" || continue
    _eb_status "$name"
    [[ $_EB_STATUS == present && -z ${force[$name]:-} ]] || todo[$name]=1
    for dep in ${_EB_DEPS[$name]}; do
      [[ -z ${todo[$dep]:-} ]] || todo[$name]=1
    done
    id=${name//-/_}
    if [[ -n ${todo[$name]:-} ]] && declare -F "_eb_needs_$id" >/dev/null; then
      _EB_NEEDER=$name
      "_eb_needs_$id"
    fi
  done
  if ((${#_EB_NEEDS_PYTHON[@]})); then
    printf -v who ', %s' "${_EB_NEEDS_PYTHON[@]}"
    who=${who#, }
    include=$("$python" -c 'import os, sysconfig; print(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null) || include=''
    if [[ -z $include ]]; then
      _EB_MISSING+=("$who: a Python to build with ($python, ENVBUILD_PYTHON, does not run)")
    elif [[ ! -f $include ]]; then
      _EB_MISSING+=("$who: the C headers of $python ($include; Debian's python3-dev)")
    fi
  fi
  ((${#_EB_MISSING[@]})) || return 0
  printf -v missing '; %s' "${_EB_MISSING[@]}"
  _eb_die "the base image lacks what the components to install need (it must provide it): ${missing#; }"
}

_eb_need_command() {
  type -P "$1" >/dev/null || _EB_MISSING+=("$_EB_NEEDER: command $1 (not on PATH)")
}

# File $1 (the need as written, with its variables, in $2).
_eb_need_file() {
  [[ -e $1 ]] || _EB_MISSING+=("$_EB_NEEDER: $1${2:+ ($2)}")
}

_eb_need_python_headers() {
  _EB_NEEDS_PYTHON+=("$_EB_NEEDER")
}
