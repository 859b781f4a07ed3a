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

# Run a real Glance image API (no Keystone, SQLite, file or rbd store) under
# uWSGI, bound to 127.0.0.1 on a free port.
#
#   tools/glance.sh install        venv with glance, python-glanceclient,
#                                  pyuwsgi and the openstack client
#                                  (tools/glance-requirements.txt)
#   tools/glance.sh start [NAME]   start instance NAME (default: main)
#   tools/glance.sh stop [NAME]    stop it by its recorded PID
#   tools/glance.sh restart [NAME] start it again on the same port, with
#                                  its images and DB
#   tools/glance.sh stop-all       stop every instance
#   tools/glance.sh endpoint [NAME]  print its URL
#
# Each instance lives in $STACK_DIR/glance/NAME/: conf/, images/, the
# SQLite DB, log/, glance.pid and endpoint (its URL). start wipes the
# instance's images and DB first, so every start is a fresh Glance.
#
# Environment:
#   STACK_DIR              see tools/stack.sh
#   GLANCE_VENV            default $STACK_DIR/glance/venv
#   GLANCE_FLAVOR          '' (default): no auth, every request is admin;
#                          'trusted': the request context comes from the
#                          X-Identity-Status/X-Roles/X-Project-Id headers
#                          (as behind keystonemiddleware); a request
#                          without them gets 401;
#                          'service': as 'trusted', but a request without
#                          them is a service user's (roles admin, member,
#                          service role 'service', project nse-stack), as
#                          Nova's calls with a service token are
#                          (tools/glance_identity.py);
#                          'keystone': keystonemiddleware, configured by
#                          [keystone_authtoken] in GLANCE_EXTRA_CONF
#   GLANCE_PORT            default: a free port
#   GLANCE_CEPH_CONF       a ceph.conf: add the rbd store 'rbd1' (pool
#                          GLANCE_CEPH_POOL, default images, client
#                          GLANCE_CEPH_USER, default admin) and make it
#                          the default store
#   GLANCE_IMAGE_SIZE_CAP  bytes (default Glance's own, 1 TiB)
#   GLANCE_EXTRA_BACKENDS  e.g. "rbd1:rbd", added to enabled_backends
#   GLANCE_EXTRA_CONF      a file appended to glance-api.conf
#   GLANCE_DB_CONNECTION   [database] connection (default: SQLite in the
#                          instance's directory, which serialises writers:
#                          concurrent clients see "database is locked")
#
# Glance's check that uploaded data matches the image's disk_format
# ([image_format] require_image_format_match) stays on.

set -euo pipefail

TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tools/functions.sh
source "$TOOLS_DIR/functions.sh"
GLANCE_TOP=$STACK_DIR/glance
GLANCE_VENV=$(realpath -m -- "${GLANCE_VENV:-$GLANCE_TOP/venv}")
REQUIREMENTS=$TOOLS_DIR/glance-requirements.txt
READY_TIMEOUT=60

function check_name {
    [[ "$1" =~ ^[a-z][a-z0-9-]*$ ]] || die "bad instance name '$1'"
}

function cmd_install {
    venv_from "$GLANCE_VENV" python3 "$REQUIREMENTS"
}

# http_code URL: the HTTP status of GET URL, 000 when nothing answers.
function http_code {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
        -H 'X-Identity-Status: Confirmed' -H 'X-Roles: admin' \
        -H 'X-Project-Id: probe' "$1" || true
}

function write_config {
    local d=$1 port=$2 backends="file1:file" default=file1
    rm -rf "$d/conf" "$d/images" "$d/staging" "$d/tasks" "$d/cache" \
        "$d/glance.sqlite"
    mkdir -p "$d/conf" "$d/images" "$d/staging" "$d/tasks" "$d/cache" \
        "$d/log"
    cp "$GLANCE_VENV/etc/glance/glance-api-paste.ini" "$d/conf/"
    sed -i "s#^disable_by_file_path = .*#disable_by_file_path = $d/disabled#" \
        "$d/conf/glance-api-paste.ini"
    # The 'trusted' pipeline: Glance's context middleware without
    # keystonemiddleware in front of it.
    sed -i 's#^default = \(.*\) unauthenticated-context rootapp$#&\ntrusted = \1 context rootapp#' \
        "$d/conf/glance-api-paste.ini"
    # The 'service' pipeline: every request without identity headers is
    # a service user's (tools/glance_identity.py).
    sed -i 's#^trusted = \(.*\) context rootapp$#&\nservice = \1 serviceidentity context rootapp#' \
        "$d/conf/glance-api-paste.ini"
    grep -q '^service = ' "$d/conf/glance-api-paste.ini" \
        || die "glance-api-paste.ini has no default pipeline to adapt"
    cp "$TOOLS_DIR/glance_identity.py" "$d/conf/"
    cat >> "$d/conf/glance-api-paste.ini" <<'PASTE'

[composite:glance-api-trusted]
paste.composite_factory = glance.api:root_app_factory
/: api
/healthcheck: healthcheck

[composite:glance-api-service]
paste.composite_factory = glance.api:root_app_factory
/: api
/healthcheck: healthcheck

[filter:serviceidentity]
paste.filter_factory = glance_identity:filter_factory
PASTE
    if [ -n "${GLANCE_CEPH_CONF:-}" ]; then
        backends="$backends,rbd1:rbd"
        default=rbd1
    fi
    if [ -n "${GLANCE_EXTRA_BACKENDS:-}" ]; then
        backends="$backends,$GLANCE_EXTRA_BACKENDS"
    fi
    cat > "$d/conf/glance-api.conf" <<CONF
[DEFAULT]
enabled_backends = $backends
show_image_direct_url = true
show_multiple_locations = true
image_cache_dir = $d/cache
enabled_import_methods = [glance-direct]
worker_self_reference_url = http://127.0.0.1:$port
public_endpoint = http://127.0.0.1:$port
image_size_cap = ${GLANCE_IMAGE_SIZE_CAP:-1099511627776}
log_file = $d/log/glance-api.log

[database]
connection = ${GLANCE_DB_CONNECTION:-sqlite:///$d/glance.sqlite}

[glance_store]
default_backend = $default

[file1]
filesystem_store_datadir = $d/images
store_description = local file store

[os_glance_staging_store]
filesystem_store_datadir = $d/staging

[os_glance_tasks_store]
filesystem_store_datadir = $d/tasks

[paste_deploy]
flavor = ${GLANCE_FLAVOR:-}
config_file = $d/conf/glance-api-paste.ini

[oslo_policy]
# Glance's new defaults refuse the no-auth context (it has no roles).
enforce_new_defaults = false
enforce_scope = false
CONF
    if [ -n "${GLANCE_CEPH_CONF:-}" ]; then
        cat >> "$d/conf/glance-api.conf" <<CONF

[rbd1]
rbd_store_pool = ${GLANCE_CEPH_POOL:-images}
rbd_store_user = ${GLANCE_CEPH_USER:-admin}
rbd_store_ceph_conf = $GLANCE_CEPH_CONF
rbd_store_chunk_size = 8
rados_connect_timeout = 5
store_description = Ceph RBD
CONF
    fi
    if [ -n "${GLANCE_EXTRA_CONF:-}" ]; then
        { echo; cat "$GLANCE_EXTRA_CONF"; } >> "$d/conf/glance-api.conf"
    fi
    write_uwsgi_ini "$d/conf/uwsgi.ini" "127.0.0.1:$port" \
        glance.wsgi.api:application "$d/log/uwsgi.log" "pythonpath = $d/conf"
}

# instance_pid NAME: print the PID of running instance NAME.
function instance_pid {
    pidfile_pid "$GLANCE_TOP/$1/glance.pid" uwsgi
}

function cmd_start {
    local name=${1:-main} d pid port
    check_name "$name"
    d=$GLANCE_TOP/$name
    if pid=$(instance_pid "$name"); then
        log "$name already running (pid $pid) at $(cat "$d/endpoint")"
        return 0
    fi
    [ -x "$GLANCE_VENV/bin/uwsgi" ] || cmd_install
    if [ -n "${GLANCE_CEPH_CONF:-}" ]; then
        link_bindings "$GLANCE_VENV"
    fi
    mkdir -p "$d"
    port=${GLANCE_PORT:-$(free_port)}
    write_config "$d" "$port"
    OS_GLANCE_CONFIG_DIR=$d/conf quietly "$d/log/db_sync.log" \
        "$GLANCE_VENV/bin/glance-manage" --config-dir "$d/conf" db_sync
    echo "http://127.0.0.1:$port" > "$d/endpoint"
    run_uwsgi "$name"
}

function cmd_restart {
    local name=${1:-main}
    check_name "$name"
    [ -s "$GLANCE_TOP/$name/endpoint" ] || die "$name was never started"
    cmd_stop "$name"
    run_uwsgi "$name"
}

# run_uwsgi NAME: start the configured instance NAME, wait until it
# answers.
function run_uwsgi {
    local name=$1 d=$GLANCE_TOP/$1 pid endpoint code deadline started
    endpoint=$(cat "$d/endpoint")
    OS_GLANCE_CONFIG_DIR=$d/conf spawn "$d/glance.pid" \
        "$d/log/uwsgi.stdout" "$GLANCE_VENV/bin/uwsgi" --ini \
        "$d/conf/uwsgi.ini" --pidfile "$d/glance.pid"
    started=$SECONDS
    deadline=$((SECONDS + READY_TIMEOUT))
    while true; do
        if ! pid=$(instance_pid "$name"); then
            # NOTE: until the uWSGI master writes its own pid (--pidfile),
            # the file holds the spawned process's, which may not be uwsgi
            # yet (a shell, setsid) or may have forked it and exited.
            if [ $((SECONDS - started)) -lt 10 ]; then
                sleep 0.2
                continue
            fi
            tail -n 30 "$d/log/uwsgi.log" "$d/log/glance-api.log" >&2 || true
            die "$name died while starting"
        fi
        code=$(http_code "$endpoint/v2/images?limit=1")
        if [ "$code" = 200 ]; then
            break
        elif [ "$code" = 401 ] && [ "${GLANCE_FLAVOR:-}" = keystone ]; then
            # Behind keystonemiddleware: it answers, and wants a token.
            break
        elif [ "$code" != 000 ]; then
            tail -n 10 "$d/log/glance-api.log" >&2 || true
            cmd_stop "$name"
            die "$name answers HTTP $code to GET /v2/images"
        elif [ $SECONDS -ge $deadline ]; then
            cmd_stop "$name"
            die "$name does not answer after ${READY_TIMEOUT}s"
        fi
        sleep 0.2
    done
    log "$name ready at $endpoint (pid $pid)"
}

function cmd_stop {
    local name=${1:-main} pid workers
    check_name "$name"
    if pid=$(instance_pid "$name"); then
        workers=$(pgrep -P "$pid" || true)
        # die-on-term: the uWSGI master stops its workers and exits.
        stop_pid "$pid" uwsgi
        for w in $workers; do
            if alive "$w" uwsgi; then
                kill -KILL "$w" 2>/dev/null || true
            fi
        done
        log "$name stopped (pid $pid)"
    fi
    rm -f "$GLANCE_TOP/$name/glance.pid"
}

function cmd_stop_all {
    local pidfile
    for pidfile in "$GLANCE_TOP"/*/glance.pid; do
        [ -e "$pidfile" ] || continue
        cmd_stop "$(basename "$(dirname "$pidfile")")"
    done
}

function cmd_endpoint {
    local name=${1:-main}
    check_name "$name"
    instance_pid "$name" > /dev/null || die "$name is not running"
    cat "$GLANCE_TOP/$name/endpoint"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start "${2:-main}" ;;
    stop) cmd_stop "${2:-main}" ;;
    restart) cmd_restart "${2:-main}" ;;
    stop-all) cmd_stop_all ;;
    endpoint) cmd_endpoint "${2:-main}" ;;
    *)
        echo "usage: $0 install|start|stop|restart|stop-all|endpoint [NAME]" >&2
        exit 2
        ;;
esac
