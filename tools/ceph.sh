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

# Run a real one-node Ceph cluster (Debian's Ceph 16): one mon and one
# memstore OSD on 127.0.0.1, cephx on, pools "vms" and "images" for RBD,
# without systemd.  Run as root.
#
#   tools/ceph.sh up [NAME]      start a fresh cluster (the data of an
#                                old one is removed), wait for HEALTH_OK
#   tools/ceph.sh down [NAME]    stop it by its recorded PIDs, remove its
#                                data
#   tools/ceph.sh status [NAME]  exit 0 if it runs, 3 otherwise
#
# NAME (default "main") tells clusters apart: "main" lives in
# $STACK_DIR/ceph, any other in $STACK_DIR/ceph-NAME.  Clients use the
# ceph.conf there; its [client] section names the client.admin keyring
# next to it.  memstore keeps the data in RAM (about
# twice what is written), and a stop loses it: this cluster is for tests.
#
# Environment: STACK_DIR (see tools/stack.sh), CEPH_OSD_BYTES (OSD
# capacity, default 4 GiB), CEPH_POOLS (default "vms images").

set -euo pipefail

TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tools/functions.sh
source "$TOOLS_DIR/functions.sh"
NAME=${2:-main}
[[ "$NAME" =~ ^[a-z][a-z0-9-]*$ ]] || die "bad cluster name '$NAME'"
if [ "$NAME" = main ]; then
    DIR=$STACK_DIR/ceph
else
    DIR=$STACK_DIR/ceph-$NAME
fi
CONF=$DIR/ceph.conf
POOLS=${CEPH_POOLS:-vms images}

# ours PID: alive, and its command line names this cluster's ceph.conf.
function ours {
    local cmdline
    # NOTE: read whole first: "tr | grep -q" under pipefail fails when
    # grep leaves before tr has written everything.
    alive "$1" && cmdline=$(tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null) \
        && grep -qF -- "$CONF" <<< "$cmdline"
}

# daemon_pid NAME: the PID of this cluster's daemon NAME (mon.a, osd.0)
# if it runs.
function daemon_pid {
    local pid
    pid=$(cat "$DIR/run/$1.pid" 2>/dev/null) && ours "$pid" && echo "$pid"
}

function start_daemon {
    local type=$1 id=$2
    "ceph-$type" -c "$CONF" -i "$id" 2>> "$DIR/log/$type.$id.stderr"
    await 20 "ceph-$type $id (see $DIR/log)" daemon_pid "$type.$id"
}

function write_conf {
    local fsid=$1 p1=$2 p2=$3
    cat > "$CONF" <<CONF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$p2,v1:127.0.0.1:$p1]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = $DIR/run
crash dir = $DIR/crash
pid file = $DIR/run/\$type.\$id.pid
log file = $DIR/log/\$type.\$id.log
mon cluster log file = $DIR/log/cluster.log
# One OSD: pools of size 1, few placement groups.
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 1
mon data avail crit = 0
# No mgr: pools and RBD do not need one.
mon mgr mkfs grace = 31536000
# Every osdmap change (pool, snapshot) waits for a paxos round, 1 s by
# default.
paxos propose interval = 0.01
paxos min wait = 0.01

[mon]
admin socket = $DIR/run/\$cluster-\$name.asok
mon data = $DIR/mon/\$cluster-\$id
keyring = $DIR/mon/\$cluster-\$id/keyring

[osd]
admin socket = $DIR/run/\$cluster-\$name.asok
osd data = $DIR/osd/\$cluster-\$id
keyring = $DIR/osd/\$cluster-\$id/keyring
osd objectstore = memstore
memstore device bytes = ${CEPH_OSD_BYTES:-4294967296}
osd memory target = 1073741824
# A weight from the tiny memstore size would round to 0.
osd crush initial weight = 1

[client]
keyring = $DIR/ceph.client.admin.keyring
CONF
}

function start_failed {
    if [ "$1" != 0 ]; then
        log "start failed, see $DIR/log"
        KEEP=1 cmd_down
    fi
}

function cmd_up {
    local fsid p1 p2 osd_uuid osd_key osd_id pool
    require_root "it starts the Ceph daemons"
    command -v ceph-mon > /dev/null || die "ceph-mon is not installed"
    cmd_down > /dev/null
    mkdir -p "$DIR"/{run,log,crash,mon/ceph-a,osd/ceph-0}
    chmod 0755 "$DIR"
    # A failed start stops what it started.
    trap 'start_failed $?' EXIT
    fsid=$(cat /proc/sys/kernel/random/uuid)
    p1=$(free_port)
    p2=$(free_port)
    [ "$p2" != "$p1" ] || p2=$(free_port)
    write_conf "$fsid" "$p1" "$p2"
    export CEPH_CONF=$CONF

    ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. \
        --cap mon 'allow *' > /dev/null
    ceph-authtool --create-keyring "$DIR/ceph.client.admin.keyring" \
        --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
        --cap mgr 'allow *' > /dev/null
    chmod 0600 "$DIR/ceph.client.admin.keyring"
    ceph-authtool "$DIR/mon.keyring" \
        --import-keyring "$DIR/ceph.client.admin.keyring" > /dev/null
    monmaptool --create --fsid "$fsid" \
        --addv a "[v2:127.0.0.1:$p2,v1:127.0.0.1:$p1]" "$DIR/monmap" \
        > /dev/null
    ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" \
        --keyring "$DIR/mon.keyring"
    start_daemon mon a
    await 30 "the mon" timeout 10 ceph --connect-timeout 5 mon stat

    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    osd_key=$(ceph-authtool --gen-print-key)
    printf '{"cephx_secret": "%s"}\n' "$osd_key" > "$DIR/osd-secret.json"
    osd_id=$(ceph osd new "$osd_uuid" 0 -i "$DIR/osd-secret.json")
    rm -f "$DIR/osd-secret.json"
    [ "$osd_id" = 0 ] || die "unexpected OSD id '$osd_id'"
    ceph-authtool --create-keyring "$DIR/osd/ceph-0/keyring" -n osd.0 \
        --add-key "$osd_key" > /dev/null
    ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" \
        2>> "$DIR/log/osd.0.mkfs.log" || die "ceph-osd --mkfs failed"
    start_daemon osd 0
    await 60 "osd.0" sh -c 'ceph osd dump --format=json \
        | grep -q "\"up\":1"'

    for pool in $POOLS; do
        ceph osd pool create "$pool" 8 8 replicated --size 1 2> /dev/null
        rbd pool init "$pool"
    done
    # A librados call on a pool returns once its placement groups are
    # active.
    for pool in $POOLS; do
        await 60 "pool $pool" timeout 10 rados -p "$pool" ls
    done
    await 60 HEALTH_OK sh -c 'ceph health | grep -q HEALTH_OK'
    trap - EXIT
    log "cluster $fsid ready (mon 127.0.0.1:$p1, pools: $POOLS)," \
        "CEPH_CONF=$CONF"
}

function cmd_down {
    local name pid
    [ -f "$CONF" ] || return 0
    # The OSD first: it tells the mon it is going down.
    for name in osd.0 mon.a; do
        pid=$(daemon_pid "$name") || continue
        stop_pid "$pid" "ceph-${name%.*}"
        log "$name stopped (pid $pid)"
    done
    if [ "${KEEP:-0}" != 1 ]; then
        rm -rf "$DIR"
    fi
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) report_status daemon_pid mon.a osd.0 ;;
    *)
        echo "usage: $0 up|down|status [NAME]" >&2
        exit 2
        ;;
esac
