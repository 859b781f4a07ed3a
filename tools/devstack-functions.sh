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

# The devstack functions our devstack plugin (devstack/) calls, as
# devstack defines them, to run the plugin without devstack: sourced by
# tools/cloud.sh and tests/unit/test_devstack.py.  Services are those of
# $ENABLED_SERVICES less $DISABLED_SERVICES; with $WITH_CEPH_PLUGIN set,
# devstack-plugin-ceph's is_ceph_enabled_for_service too (Ceph for a
# service when ENABLE_CEPH_SERVICE=True).

# shellcheck source=tools/functions.sh
source "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

function is_service_enabled {
    local service
    for service in "$@"; do
        [[ ,$ENABLED_SERVICES, == *,$service,* ]] && return 0
        [[ $service == nova && ,$ENABLED_SERVICES == *,n-* ]] && return 0
        [[ $service == glance && ,$ENABLED_SERVICES == *,g-* ]] && return 0
    done
    return 1
}

function enable_service {
    local service
    for service in "$@"; do
        if [[ ,${DISABLED_SERVICES:-}, != *,$service,* ]]; then
            ENABLED_SERVICES+=,$service
        fi
    done
}

function define_plugin {
    :
}

function echo_summary {
    echo "$*"
}

# die LINENO MESSAGE...
function die {
    shift
    echo "die: $*" >&2
    exit 1
}

if [[ -n ${WITH_CEPH_PLUGIN:-} ]]; then
    # As devstack-plugin-ceph's lib/cephadm defines it.
    function is_ceph_enabled_for_service {
        local name
        name=ENABLE_CEPH_$(echo "$1" | tr '[:lower:]-' '[:upper:]_')
        is_service_enabled "$1" && [[ ${!name:-} == True ]]
    }
fi
