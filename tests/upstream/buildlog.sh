#!/bin/bash
# Compiler launcher of the stand-in upstream projects (tests/standins.py): when
# EB_TEST_UPSTREAM_LOG is set, appends "<project> compile <source> jobs=<N>" to
# it, then runs the compiler. A test counts the lines to see how often a project
# was compiled and reads N to see which job budget reached make or ninja.
# Usage: buildlog.sh PROJECT COMPILER ARGS...

# The -j the build tool running this compile was given, read from the nearest
# make or ninja among its ancestors: make hands it down in MAKEFLAGS (serial
# without it); ninja has it only on its command line (its default is nproc+2,
# written "default"). The environment alone proves nothing: a MAKEFLAGS
# exported to a ninja build is not what ninja runs with.
jobs() {
  local pid=$PPID name args stat
  while ((pid > 1)); do
    name=$(<"/proc/$pid/comm")
    case $name in
      ninja*)
        mapfile -d '' args <"/proc/$pid/cmdline"
        if [[ " ${args[*]} " =~ \ -j\ ?([0-9]+)\  ]]; then echo "${BASH_REMATCH[1]}"; else echo default; fi
        return
        ;;
      make | gmake)
        if [[ " ${MAKEFLAGS:-} " =~ \ -j([0-9]*)\  ]]; then echo "${BASH_REMATCH[1]:-unlimited}"; else echo 1; fi
        return
        ;;
    esac
    # The name in stat may hold spaces; the parent pid is the second field after it.
    stat=$(<"/proc/$pid/stat")
    read -r _ pid _ <<<"${stat##*) }"
  done
  echo unknown
}

project=$1
shift
if [[ -n ${EB_TEST_UPSTREAM_LOG:-} ]]; then
  source=unknown
  for arg; do
    [[ $arg != *.c ]] || source=${arg##*/}
  done
  echo "$project compile $source jobs=$(jobs)" >>"$EB_TEST_UPSTREAM_LOG"
fi
exec "$@"
