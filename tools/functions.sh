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

# Helpers shared by the scripts under tools/ (sourced; stop_pid needs the
# script's log).  Daemons are only ever signalled by recorded PID.

# require_root PROG WHY: exit unless run as root.
function require_root {
    if [ "$(id -u)" != 0 ]; then
        echo "$1: run as root ($2)" >&2
        exit 1
    fi
}

# ensure_venv VENV COMMAND PIP_ARGS...: create VENV and pip install
# PIP_ARGS into it, unless VENV/bin/COMMAND already exists.
function ensure_venv {
    local venv=$1 command=$2
    shift 2
    if [ ! -x "$venv/bin/$command" ]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q "$@"
    fi
}

# alive PID [NAME]: PID is a running process, called NAME* if NAME is
# given.  A zombie counts as dead: PID 1 may reap orphans a second late.
function alive {
    local pid=$1 name=${2:-} stat comm
    [[ "$pid" =~ ^[1-9][0-9]*$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ] || return 1
    [ -n "$name" ] || return 0
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ "$comm" == "$name"* ]]
}

# stop_pid PID NAME: TERM, wait up to STOP_TIMEOUT (default 10) s, then
# KILL.
function stop_pid {
    local pid=$1 name=$2 deadline
    deadline=$((SECONDS + ${STOP_TIMEOUT:-10}))
    kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid" "$name"; do
        if [ $SECONDS -ge $deadline ]; then
            log "$name (pid $pid) ignored SIGTERM, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.1
    done
}
