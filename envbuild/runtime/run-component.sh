#!/usr/bin/env bash
# Installs one component during an image build, with the same engine and the
# same component text as setup_deps.sh, so the stamps it writes are the ones
# the runtime script looks for.
set -euo pipefail
export ENVBUILD_STEP_OUTPUT=stream
# shellcheck source=/dev/null
source /opt/envbuild/lib/engine.sh
for fragment in /opt/envbuild/lib/components/*.sh; do
  # shellcheck source=/dev/null
  source "$fragment"
done
_eb_prefix_defaults
_eb_main --only "$1"
