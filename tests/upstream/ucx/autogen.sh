#!/bin/sh
# Stand-in for UCX's autogen.sh (autoreconf): configure is generated, never committed.
set -e
cd "$(dirname "$0")"
install -m 755 configure.ac configure
