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

# The one shell library of the scripts under tools/, sourced by each.
# Messages are prefixed with the script's name ($PROG).  Daemons are only
# ever signalled by recorded PID.

PROG=$(basename "${BASH_SOURCE[-1]}" .sh)

function log {
    echo "$PROG: $*"
}

function die {
    echo "$PROG: ERROR: $*" >&2
    exit 1
}

# require_root WHY: exit unless run as root.
function require_root {
    [ "$(id -u)" = 0 ] || die "run as root ($1)"
}

# Where the stack, its Glance, its Ceph and the cloud keep their state.
STACK_DIR=$(realpath -m -- "${STACK_DIR:-/var/tmp/nova-snapshot-ext-stack}")

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

# venv_from VENV PYTHON REQUIREMENTS: VENV made by PYTHON with the
# packages of REQUIREMENTS at the versions of openstack-constraints.txt;
# made again from nothing whenever one of the three changed (VENV/recipe
# holds their sha256).
function venv_from {
    local venv=$1 python=$2 reqs=$3 recipe
    local constraints
    constraints=$(dirname "${BASH_SOURCE[0]}")/openstack-constraints.txt
    recipe=$({ cat "$reqs" "$constraints"; "$python" --version; } \
        | sha256sum | cut -d' ' -f1)
    [ "$(cat "$venv/recipe" 2>/dev/null)" != "$recipe" ] || return 0
    log "installing $(basename "$reqs") into $venv (a few minutes)"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q -U pip
    "$venv/bin/pip" install -q -c "$constraints" -r "$reqs"
    echo "$recipe" > "$venv/recipe"
}

# link_bindings VENV: Debian's rados, rbd and nbd modules (not on PyPI)
# made importable in VENV by the package's own install step
# (nova-snapshot-ext-link-bindings), run from this source tree.
function link_bindings {
    PYTHONPATH=$(dirname "${BASH_SOURCE[0]}")/.. \
        python3 -m nova_snapshot_ext.cmd.bindings "$1" > /dev/null
}

# iniset FILE SECTION OPTION VALUE, as devstack's (crudini keeps the
# file's comments, mode and owner).
function iniset {
    crudini --set "$@"
}

# free_port: a TCP port of 127.0.0.1 that nothing listens on now.
function free_port {
    python3 -c 'import socket; s = socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# quietly LOGFILE COMMAND...: run COMMAND, its output appended to
# LOGFILE; if it fails, show the end of LOGFILE and die.
function quietly {
    local logfile=$1
    shift
    if ! "$@" >> "$logfile" 2>&1; then
        tail -n 20 "$logfile" >&2
        die "$* failed"
    fi
}

# wait_for SECONDS COMMAND...: retry COMMAND until it succeeds; after
# SECONDS, show the end of its last output and return 1.
function wait_for {
    local deadline out
    deadline=$((SECONDS + $1))
    shift
    until out=$("$@" 2>&1); do
        if [ $SECONDS -ge $deadline ]; then
            tail -n 5 <<< "$out" >&2
            return 1
        fi
        sleep 0.2
    done
}

# await SECONDS WHAT COMMAND...: wait_for, or die.
function await {
    local seconds=$1 what=$2
    shift 2
    wait_for "$seconds" "$@" || die "$what not ready after ${seconds}s"
}

# spawn PIDFILE LOGFILE COMMAND...: run COMMAND in the background, in a
# session of its own, its output appended to LOGFILE, its pid in PIDFILE.
function spawn {
    local pidfile=$1 logfile=$2
    shift 2
    setsid "$@" < /dev/null >> "$logfile" 2>&1 &
    echo $! > "$pidfile"
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

function dead {
    ! alive "$@"
}

# pidfile_pid PIDFILE [NAME]: print the PID recorded in PIDFILE if it is
# alive (and called NAME*).
function pidfile_pid {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    alive "$pid" "${2:-}" || return 1
    echo "$pid"
}

# report_status PID_OF NAME...: say whether each NAME runs ("PID_OF
# NAME" prints its PID if it does); 3 if one does not.
function report_status {
    local pid_of=$1 name pid rc=0
    shift
    for name in "$@"; do
        if pid=$("$pid_of" "$name"); then
            log "$name running (pid $pid)"
        else
            log "$name not running"
            rc=3
        fi
    done
    return $rc
}

# stop_pid PID NAME: TERM, wait up to STOP_TIMEOUT (default 10) s, then
# KILL.
function stop_pid {
    local pid=$1 name=$2
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for "${STOP_TIMEOUT:-10}" dead "$pid" "$name"; then
        log "$name (pid $pid) ignored SIGTERM, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
}

# write_uwsgi_ini FILE ADDRESS MODULE LOGFILE [LINE...]: a uWSGI
# configuration with the settings devstack uses for the API services
# (they read chunked request bodies themselves), and LINEs.
function write_uwsgi_ini {
    local file=$1 address=$2 module=$3 logfile=$4
    shift 4
    {
        cat <<UWSGI
[uwsgi]
http-socket = $address
module = $module
master = true
processes = 1
threads = 4
enable-threads = true
lazy-apps = true
die-on-term = true
need-app = true
http-chunked-input = true
http-auto-chunked = true
http-raw-body = true
chunked-input-limit = 4096000
buffer-size = 65535
add-header = Connection: close
logto = $logfile
UWSGI
        printf '%s\n' "$@"
    } > "$file"
}
