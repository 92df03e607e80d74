#!/bin/bash
# Compiler launcher of the stand-in upstream projects (tests/standins.py): when
# EB_TEST_UPSTREAM_LOG is set, appends "<project> compile <source> jobs=<N>" to
# it, then runs the compiler. A test counts the lines to see how often a project
# was compiled and reads N to see which job budget reached make or ninja.
# Usage: buildlog.sh PROJECT COMPILER ARGS...

# The -j the running build tool was given: make hands it down in MAKEFLAGS
# (serial without it); ninja has it only on its command line (its default is
# nproc+2, written "default").
jobs() {
  local pid=$PPID name args stat
  if [[ -n ${MAKEFLAGS+set} ]]; then
    if [[ " $MAKEFLAGS " =~ \ -j([0-9]*)\  ]]; then
      echo "${BASH_REMATCH[1]:-unlimited}"
    else
      echo 1
    fi
    return
  fi
  while ((pid > 1)); do
    name=$(<"/proc/$pid/comm")
    if [[ $name == ninja* ]]; then
      mapfile -d '' args <"/proc/$pid/cmdline"
      if [[ " ${args[*]} " =~ \ -j\ ?([0-9]+)\  ]]; then echo "${BASH_REMATCH[1]}"; else echo default; fi
      return
    fi
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
