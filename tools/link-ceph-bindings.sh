#!/bin/bash
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

# Make Debian's Ceph bindings (python3-rados, python3-rbd) importable in a
# venv: they are not on PyPI, and Debian builds them for CPython 3.11
# only.  Links the two extension modules, and nothing else of Debian's
# dist-packages, into the venv's site-packages. Links libnbd's bindings
# (python3-libnbd: nbd.py and its extension module, which incremental
# snapshots use) the same way.
#
#   tools/link-ceph-bindings.sh SITE_PACKAGES_DIR|VENV_DIR

set -euo pipefail

SITE=${1:?usage: $0 SITE_PACKAGES_DIR|VENV_DIR}
if [ -x "$SITE/bin/python" ]; then
    SITE=$("$SITE/bin/python" -c \
        'import sysconfig; print(sysconfig.get_path("purelib"))')
fi
DEBIAN_DIR=/usr/lib/python3/dist-packages

for module in rados rbd; do
    found=("$DEBIAN_DIR/$module".cpython-311-*.so)
    if [ ! -e "${found[0]}" ]; then
        echo "link-ceph-bindings: $DEBIAN_DIR has no $module module for" \
            "CPython 3.11: install python3-$module" >&2
        exit 1
    fi
    ln -sf "${found[0]}" "$SITE/"
done

for pattern in nbd.py 'libnbdmod.cpython-311-*.so'; do
    # shellcheck disable=SC2206 # the pattern is a glob on purpose
    found=("$DEBIAN_DIR"/$pattern)
    if [ ! -e "${found[0]}" ]; then
        echo "link-ceph-bindings: $DEBIAN_DIR has no $pattern: install" \
            "python3-libnbd" >&2
        exit 1
    fi
    ln -sf "${found[0]}" "$SITE/"
done
