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

# The test command of the README: on a fresh Debian 12 machine, as root,
# install what the tests need, bring the real stack up, run the style,
# unit and functional tests, and take the stack down again.
#
#   tools/run-tests.sh [TOX ENVS]   default: pep8,mypy,py3,functional,nova,nova33,tempest,docs,cloud
#
# With "cloud" among them, the one-node cloud (tools/cloud.sh up) is built
# while the other environments run, and tox -e cloud runs last.
#
# Environment: STACK_DIR (see tools/stack.sh), TOX_VENV (where tox itself
# is installed, default .venv-tox in the repository).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ENVS=${1:-pep8,mypy,py3,functional,nova,nova33,tempest,docs,cloud}

# shellcheck source=tools/functions.sh
source tools/functions.sh
require_root "the tests drive libvirtd, Ceph and Glance"

bash tools/install-deps.sh

TOX_VENV=${TOX_VENV:-$ROOT/.venv-tox}
ensure_venv "$TOX_VENV" tox 'tox>=4.0.0'

# Everything down at the end; the cloud's service logs outlive it, in
# .ci-logs/cloud-log.
function teardown {
    local log=$STACK_DIR/cloud/log
    rm -rf .ci-logs/cloud-log
    cp -r "$log" .ci-logs/cloud-log 2> /dev/null || true
    bash tools/cloud.sh down > /dev/null 2>&1 || true
    bash tools/stack.sh down
}
trap teardown EXIT
mkdir -p .ci-logs
NSE_SKIP_INSTALL=1 bash tools/stack.sh up

OTHER_ENVS=$(tr ',' '\n' <<< "$ENVS" | grep -vx cloud | paste -sd, -) || true
if [[ ",$ENVS," == *,cloud,* ]]; then
    mkdir -p "$ROOT/.ci-logs"
    bash tools/cloud.sh up > "$ROOT/.ci-logs/cloud-up.log" 2>&1 &
    CLOUD_UP=$!
fi
rc=0
if [ -n "$OTHER_ENVS" ]; then
    "$TOX_VENV/bin/tox" -e "$OTHER_ENVS" || rc=$?
fi
if [ -n "${CLOUD_UP:-}" ]; then
    if ! wait "$CLOUD_UP"; then
        tail -n 40 "$ROOT/.ci-logs/cloud-up.log" >&2
        echo "run-tests: tools/cloud.sh up failed" >&2
        exit 1
    fi
    grep '^cloud: ' "$ROOT/.ci-logs/cloud-up.log" | tail -n 1
    "$TOX_VENV/bin/tox" -e cloud || rc=$?
fi
exit $rc
