#!/usr/bin/env bash
# Run by `envbuild fetch --apt` in a container of the recipe's base image, with
# the fetch directory's apt/ mounted at /envbuild-apt:
#
#   apt-download.sh UID:GID 'PKG PKG...' 'PKG...'
#
# Downloads, for each group (a component's apt packages), the .debs that
# installing it on this image would fetch: the packages the image lacks and
# the dependencies they need, resolved from the image's own state, as the
# runtime script's _eb_apt resolves them. Then indexes the directory as a flat
# repository (Packages) for `deb [trusted=yes] <dir> ./`, and gives it to UID:GID.
set -euo pipefail
out=/envbuild-apt
owner=$1
shift
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
mkdir -p "$out/partial"
for group in "$@"; do
  read -r -a packages <<<"$group"
  apt-get install -y -q --download-only --no-install-recommends -o "Dir::Cache::Archives=$out" "${packages[@]}"
done
rm -rf "$out/partial" "$out/lock"
cd "$out"
: >Packages.part
for deb in *.deb; do
  [[ -f $deb ]] || continue
  sum=$(sha256sum "$deb")
  dpkg-deb -f "$deb" >>Packages.part
  printf 'Filename: ./%s\nSize: %s\nSHA256: %s\n\n' "$deb" "$(stat -c %s "$deb")" "${sum%% *}" >>Packages.part
done
mv -f Packages.part Packages
chown -R "$owner" "$out"
