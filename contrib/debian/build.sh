#!/bin/bash
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Build the Debian package of this checkout's HEAD (Debian 12, with
# dh-virtualenv; pip fetches the Python dependencies):
#
#   contrib/debian/build.sh [OUTDIR]     default: dist/

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${1:-$ROOT/dist}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$ROOT" archive --format=tar --prefix=src/ HEAD | tar -x -C "$work"
cp -r "$ROOT/contrib/debian" "$work/src/debian"
rm "$work/src/debian/build.sh"
(cd "$work/src" && dpkg-buildpackage -b -us -uc)
mkdir -p "$OUT"
cp "$work"/*.deb "$OUT"/
ls "$OUT"/*.deb
