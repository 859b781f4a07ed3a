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

# The main job of the README, on the embedded default store: bring the
# stack and a running counter-writing test guest up, snapshot the guest
# live and cold into a directory store with the nova-snapshot-ext command,
# and print the results. The images stay in $STACK_DIR/demo/images.
#
#   tools/demo.sh
#
# Environment: STACK_DIR (see tools/stack.sh), DEMO_VENV (the venv the
# package is installed in, default .venv-demo in the repository; newer tox
# versions write a file named .venv), DATA_MB (the
# data written on the guest's disk, default 256).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# shellcheck source=tools/functions.sh
source tools/functions.sh
require_root "it starts libvirtd, Ceph and Glance"

bash tools/install-deps.sh
VENV=${DEMO_VENV:-$ROOT/.venv-demo}
ensure_venv "$VENV" nova-snapshot-ext -e "$ROOT"
link_bindings "$VENV"

trap 'bash tools/stack.sh down' EXIT
NSE_SKIP_INSTALL=1 bash tools/stack.sh up
PATH=$VENV/bin:$PATH "$VENV/bin/python" -m tools.demo
