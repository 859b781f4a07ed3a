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

# A real one-node OpenStack on the test stack's libvirtd and Ceph, from
# Debian packages and PyPI only (no devstack, no git clones, no systemd);
# its compute hosts run this project's driver, configured by our devstack
# plugin.  Run as root, after tools/stack.sh up.  README.rst ("A one-node
# cloud") says what runs and how to use it.
#
#   tools/cloud.sh up|down|status|install
#   tools/cloud.sh restart SERVICE   (a pid file's name in $CLOUD_DIR/run)
#
# All on 127.0.0.1: MariaDB, RabbitMQ, a Ceph manager (for "ceph df"),
# Keystone, Glance (tools/glance.sh instance "cloud"), Placement, Neutron
# (no agents), Nova's API, conductor and scheduler; nova-compute on hosts
# local and local2 (qcow2 disks, zone local, as the user nova, privsep
# helpers through sudo) and rbd (disks in pool cloud-vms, zone rbd, as
# root), each with a libvirtd of its own (hostname nse-cloud-HOST, in a
# private mount and UTS namespace): Nova names a node after its
# libvirtd's hostname.  In $CLOUD_DIR (default $STACK_DIR/cloud):
# openrc, admin-openrc, cli.conf (the command line on host rbd), the
# Tempest workspace tempest/, venv/ (tools/cloud-requirements.txt), and
# each service's etc/, log/, run/.  Passwords are made by "up", kept in
# $CLOUD_DIR/secrets (0600) and the configuration, never on a command line.
#
# Environment: STACK_DIR, CLOUD_DIR, CLOUD_DB_PORT (default 13306),
# CLOUD_PYTHON (the venv's Python, default /usr/bin/python3: every user
# must be able to run it).

set -euo pipefail

TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$TOOLS_DIR/.." && pwd)
# shellcheck source=tools/functions.sh
source "$TOOLS_DIR/functions.sh"
CLOUD_DIR=$(realpath -m -- "${CLOUD_DIR:-$STACK_DIR/cloud}")
VENV=$CLOUD_DIR/venv
PYTHON=${CLOUD_PYTHON:-/usr/bin/python3}
ETC=$CLOUD_DIR/etc
LOG=$CLOUD_DIR/log
RUN=$CLOUD_DIR/run
DB_PORT=${CLOUD_DB_PORT:-13306}
DB_SOCK=$RUN/mysqld.sock
HOST_IP=127.0.0.1
KEYSTONE_URL=http://$HOST_IP:5000
GLANCE_PORT=9292
CEPH_CONF=$STACK_DIR/ceph/ceph.conf
# Pools of their own in the stack's Ceph: the functional tests' gc must
# not see the cloud's images.
CLOUD_VMS_POOL=cloud-vms
CLOUD_IMAGES_POOL=cloud-images
# The libvirt secret of the Ceph key on the rbd host.
CEPH_SECRET_UUID=5b6b1d4e-7d3c-4f59-9a61-2b3a8f0c9e11
READY_TIMEOUT=${READY_TIMEOUT:-240}
STOP_TIMEOUT=${STOP_TIMEOUT:-20}
# Started in this order, stopped in the reverse one.
SERVICES=(
    mysqld epmd rabbitmq ceph-mgr keystone placement neutron nova-api
    nova-conductor nova-scheduler libvirtd-local libvirtd-local2
    libvirtd-rbd nova-compute-local nova-compute-local2 nova-compute-rbd
)
# The compute hosts; those of NOVA_USER_HOSTS run nova-compute as
# $NOVA_USER, the others as root.
COMPUTE_HOSTS=(local local2 rbd)
NOVA_USER_HOSTS=(local local2)
NOVA_USER=nova
SUDOERS=/etc/sudoers.d/nova-snapshot-ext-cloud

export STACK_DIR CLOUD_DIR

function service_pid {
    pidfile_pid "$RUN/$1.pid"
}

# start NAME COMMAND...: run COMMAND in the background as service NAME,
# its output in $LOG/NAME.out, its pid in $RUN/NAME.pid.
function start {
    local name=$1
    shift
    spawn "$RUN/$name.pid" "$LOG/$name.out" "$@"
}

function secret {
    # shellcheck disable=SC1090,SC1091
    (source "$CLOUD_DIR/secrets" && echo "${!1}")
}

function cmd_install {
    local pip=("$VENV/bin/pip" install -c "$TOOLS_DIR/openstack-constraints.txt")
    mkdir -p "$LOG"
    # The system's Python, which every user may run: nova-compute runs as
    # nova, and a Python in root's home directory is not nova's.
    venv_from "$VENV" "$PYTHON" "$TOOLS_DIR/cloud-requirements.txt"
    # This project, as Nova's compute hosts install it (not in develop
    # mode: the module it puts into nova.virt is the one Nova loads).
    quietly "$LOG/pip.log" "${pip[@]}" --force-reinstall --no-deps "$ROOT"
    quietly "$LOG/pip.log" "${pip[@]}" "$ROOT"
    link_bindings "$VENV"
}

function make_secrets {
    local name
    umask 077
    for name in DB_PASS ADMIN_PASS DEMO_PASS SERVICE_PASS; do
        echo "$name=$(openssl rand -hex 16)"
    done > "$CLOUD_DIR/secrets"
    umask 022
}

# --- MariaDB, RabbitMQ, a Ceph manager -------------------------------------

function start_mysqld {
    local data=$CLOUD_DIR/mysql db
    if [ ! -d "$data/mysql" ]; then
        mkdir -p "$data"
        quietly "$LOG/mysql-install.log" mariadb-install-db --no-defaults \
            --datadir="$data" --user=root \
            --auth-root-authentication-method=socket
    fi
    start mysqld /usr/sbin/mariadbd --no-defaults --datadir="$data" \
        --user=root --socket="$DB_SOCK" --port="$DB_PORT" \
        --bind-address=$HOST_IP --skip-name-resolve \
        --innodb-buffer-pool-size=64M --max-connections=500 \
        --log-error="$LOG/mysqld.log" --pid-file="$RUN/mysqld.real.pid"
    await "$READY_TIMEOUT" MariaDB mariadb --no-defaults -S "$DB_SOCK" -u root -e 'SELECT 1'
    {
        for db in keystone glance placement neutron nova_api nova \
                nova_cell0; do
            echo "CREATE DATABASE IF NOT EXISTS $db;"
        done
        echo "CREATE USER IF NOT EXISTS 'openstack'@'$HOST_IP' IDENTIFIED BY '$(secret DB_PASS)';"
        echo "GRANT ALL PRIVILEGES ON *.* TO 'openstack'@'$HOST_IP';"
        echo "FLUSH PRIVILEGES;"
    } | mariadb --no-defaults -S "$DB_SOCK" -u root
    log "MariaDB ready on $HOST_IP:$DB_PORT"
}

function db_url {
    echo "mysql+pymysql://openstack:$(secret DB_PASS)@$HOST_IP:$DB_PORT/$1?charset=utf8"
}

# epmd, Erlang's port mapper, in the foreground under its recorded pid:
# RabbitMQ would start one of its own that leaves its session and
# outlives it.
function start_epmd {
    start epmd /usr/bin/epmd -address "$HOST_IP"
    await "$READY_TIMEOUT" epmd /usr/bin/epmd -names
}

function start_rabbitmq {
    local d=$CLOUD_DIR/rabbitmq
    mkdir -p "$d/mnesia" "$d/log" "$d/home"
    # The guest user may connect from loopback only, which is all the
    # cloud needs.
    cat > "$d/rabbitmq.conf" <<CONF
listeners.tcp.default = $HOST_IP:5672
loopback_users.guest = true
CONF
    export RABBITMQ_CONFIG_FILE=$d/rabbitmq.conf
    export RABBITMQ_MNESIA_BASE=$d/mnesia RABBITMQ_LOG_BASE=$d/log
    export RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_PID_FILE=$RUN/rabbitmq.real.pid
    export RABBITMQ_ENABLED_PLUGINS_FILE=$d/enabled_plugins
    export HOME=$d/home
    echo '[].' > "$d/enabled_plugins"
    start rabbitmq /usr/lib/rabbitmq/bin/rabbitmq-server
    await "$READY_TIMEOUT" RabbitMQ /usr/lib/rabbitmq/bin/rabbitmqctl -n rabbit@localhost \
        await_startup
    log "RabbitMQ ready on $HOST_IP:5672"
}

function transport_url {
    echo "rabbit://guest:guest@$HOST_IP:5672/"
}

# ceph ARGS...: the ceph command on the stack's cluster.
function ceph {
    CEPH_CONF=$CEPH_CONF timeout 30 /usr/bin/ceph "$@"
}

# Nova's rbd image backend reads the pools' usage with "ceph df", which
# a manager answers: the stack's cluster has none of its own.
function start_ceph_mgr {
    local d=$CLOUD_DIR/ceph-mgr pool
    mkdir -p "$d"
    ceph auth get-or-create mgr.cloud mon 'allow profile mgr' \
        osd 'allow *' mds 'allow *' -o "$d/keyring" 2>> "$LOG/ceph-mgr.out"
    start ceph-mgr ceph-mgr -f -c "$CEPH_CONF" -i cloud \
        --keyring "$d/keyring" --mgr-data "$d"
    for pool in "$CLOUD_VMS_POOL" "$CLOUD_IMAGES_POOL"; do
        ceph osd pool create "$pool" 8 8 replicated --size 1 \
            >> "$LOG/ceph-mgr.out" 2>&1
        CEPH_CONF=$CEPH_CONF rbd pool init "$pool"
    done
    await "$READY_TIMEOUT" "the Ceph manager" pool_stats "$CLOUD_VMS_POOL"
    log "Ceph manager ready, pools $CLOUD_VMS_POOL and $CLOUD_IMAGES_POOL"
}

# delete_pools: the cloud's pools, with every image in them.
function delete_pools {
    local pool
    [ -s "$CEPH_CONF" ] || return 0
    ceph config set mon mon_allow_pool_delete true > /dev/null 2>&1 \
        || return 0
    for pool in "$CLOUD_VMS_POOL" "$CLOUD_IMAGES_POOL"; do
        ceph osd pool rm "$pool" "$pool" --yes-i-really-really-mean-it \
            > /dev/null 2>&1 || true
    done
}

# pool_stats POOL: "ceph df" knows POOL.
function pool_stats {
    grep -q "\"name\":\"$1\"" <<< "$(ceph df -f json)"
}

# --- the API services (uWSGI) ----------------------------------------------

# start_uwsgi NAME PORT MODULE [ENV=VALUE...]
function start_uwsgi {
    local name=$1 port=$2 module=$3
    shift 3
    write_uwsgi_ini "$ETC/$name-uwsgi.ini" "$HOST_IP:$port" "$module" \
        "$LOG/$name-uwsgi.log"
    start "$name" env "$@" "$VENV/bin/uwsgi" --ini "$ETC/$name-uwsgi.ini"
    # Anything that answers HTTP, whatever the status.
    await "$READY_TIMEOUT" "$name" curl -s -o /dev/null --max-time 5 "http://$HOST_IP:$port/"
    log "$name ready on $HOST_IP:$port"
}

# ksa FILE SECTION USER [LINE...]: append keystoneauth password settings
# of service user USER (and LINEs) as section SECTION of FILE.
function ksa {
    local file=$1 section=$2 user=$3
    shift 3
    {
        printf '\n[%s]\n' "$section"
        cat <<CONF
auth_url = $KEYSTONE_URL
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $user
password = $(secret SERVICE_PASS)
CONF
        printf '%s\n' "$@"
    } >> "$file"
}

# authtoken FILE USER: keystonemiddleware settings of service user USER.
function authtoken {
    ksa "$1" keystone_authtoken "$2" "www_authenticate_uri = $KEYSTONE_URL" \
        "service_token_roles_required = true"
}

# service_conf FILE NAME DB_SECTION: FILE begins with service NAME's log
# file and database (DB_SECTION's connection).
function service_conf {
    printf '[DEFAULT]\nlog_file = %s\n\n[%s]\nconnection = %s\n\n' \
        "$LOG/$2.log" "$3" "$(db_url "$2")" > "$1"
}

function start_keystone {
    local conf=$ETC/keystone.conf
    mkdir -p "$CLOUD_DIR/keystone/fernet-keys" "$CLOUD_DIR/keystone/credential-keys"
    service_conf "$conf" keystone database
    cat >> "$conf" <<CONF
[token]
provider = fernet

[fernet_tokens]
key_repository = $CLOUD_DIR/keystone/fernet-keys

[credential]
key_repository = $CLOUD_DIR/keystone/credential-keys
CONF
    local km=(quietly "$LOG/keystone-manage.log" "$VENV/bin/keystone-manage"
        --config-file "$conf")
    "${km[@]}" db_sync
    "${km[@]}" fernet_setup --keystone-user root --keystone-group root
    "${km[@]}" credential_setup --keystone-user root --keystone-group root
    OS_BOOTSTRAP_PASSWORD=$(secret ADMIN_PASS) "${km[@]}" bootstrap \
        --bootstrap-admin-url "$KEYSTONE_URL/v3" \
        --bootstrap-internal-url "$KEYSTONE_URL/v3" \
        --bootstrap-public-url "$KEYSTONE_URL/v3" \
        --bootstrap-region-id RegionOne
    start_uwsgi keystone 5000 keystone.wsgi.api:application \
        OS_KEYSTONE_CONFIG_FILES="$conf"
}

function start_glance {
    local extra=$ETC/glance-extra.conf
    # Glance's default, said: a location added through the location API
    # (our direct snapshot's) gets its checksum and hash by a task.
    printf '[DEFAULT]\ndo_secure_hash = true\n' > "$extra"
    authtoken "$extra" glance
    GLANCE_VENV=$VENV GLANCE_PORT=$GLANCE_PORT GLANCE_FLAVOR=keystone \
        GLANCE_CEPH_CONF=$CEPH_CONF GLANCE_CEPH_POOL=$CLOUD_IMAGES_POOL \
        GLANCE_EXTRA_CONF=$extra GLANCE_DB_CONNECTION=$(db_url glance) \
        bash "$TOOLS_DIR/glance.sh" start cloud
}

function start_placement {
    local conf=$ETC/placement.conf
    service_conf "$conf" placement placement_database
    cat >> "$conf" <<CONF
[api]
auth_strategy = keystone
CONF
    authtoken "$conf" placement
    "$VENV/bin/placement-manage" --config-file "$conf" db sync
    start_uwsgi placement 8778 placement.wsgi.api:application \
        OS_PLACEMENT_CONFIG_DIR="$ETC" OS_PLACEMENT_CONFIG_FILES=placement.conf
}

function start_neutron {
    local conf=$ETC/neutron.conf ml2=$ETC/ml2_conf.ini
    cp "$VENV/etc/neutron/api-paste.ini" "$ETC/neutron-api-paste.ini"
    cat > "$conf" <<CONF
[DEFAULT]
core_plugin = ml2
service_plugins =
auth_strategy = keystone
transport_url = $(transport_url)
api_paste_config = $ETC/neutron-api-paste.ini
log_file = $LOG/neutron.log
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false

[database]
connection = $(db_url neutron)

[oslo_concurrency]
lock_path = $CLOUD_DIR/neutron/locks
CONF
    authtoken "$conf" neutron
    cat > "$ml2" <<CONF
[ml2]
type_drivers = flat,vlan
tenant_network_types =
mechanism_drivers =
extension_drivers = port_security

[ml2_type_flat]
flat_networks = *
CONF
    quietly "$LOG/neutron-db-manage.log" "$VENV/bin/neutron-db-manage" \
        --config-file "$conf" --config-file "$ml2" upgrade heads
    start_uwsgi neutron 9696 neutron.wsgi.api:application \
        OS_NEUTRON_CONFIG_DIR="$ETC" \
        "OS_NEUTRON_CONFIG_FILES=neutron.conf;ml2_conf.ini"
}

# --- Nova ------------------------------------------------------------------

function write_nova_conf {
    local conf=$ETC/nova.conf section
    cp "$VENV/etc/nova/api-paste.ini" "$ETC/nova-api-paste.ini"
    mkdir -p "$CLOUD_DIR/nova/locks"
    # It holds passwords: root's, readable by group nova (nova-compute).
    install -m 0640 -g "$NOVA_USER" /dev/null "$conf"
    cat > "$conf" <<CONF
[DEFAULT]
transport_url = $(transport_url)
my_ip = $HOST_IP
state_path = $CLOUD_DIR/nova
use_neutron = true
compute_driver = libvirt.LibvirtDriver
instance_name_template = instance-%08x
# Servers without networks must not wait for Neutron's events.
vif_plugging_is_fatal = false
vif_plugging_timeout = 0
allow_resize_to_same_host = true
# The test guest ignores ACPI: no need to wait for it to power off.
shutdown_timeout = 3
# Servers without an availability zone go to the local-disk host.
default_schedule_zone = local
metadata_workers = 1
osapi_compute_workers = 1
enabled_apis = osapi_compute

[api]
auth_strategy = keystone

[wsgi]
api_paste_config = $ETC/nova-api-paste.ini

[api_database]
connection = $(db_url nova_api)

[database]
connection = $(db_url nova)

[oslo_concurrency]
lock_path = $CLOUD_DIR/nova/locks

[conductor]
workers = 1

[scheduler]
workers = 1
discover_hosts_in_cells_interval = -1

[filter_scheduler]
enabled_filters = ComputeFilter,ComputeCapabilitiesFilter,ImagePropertiesFilter
# Pack by free RAM, and by nothing else: a server without a zone goes to
# host local (it reserves more RAM than local2) while local has room, as
# the cloud tests expect.
weight_classes = nova.scheduler.weights.ram.RAMWeigher
ram_weight_multiplier = -1.0

[glance]
api_servers = http://$HOST_IP:$GLANCE_PORT
num_retries = 2

[libvirt]
virt_type = qemu
connection_uri = qemu:///system
cpu_mode = none

[vnc]
enabled = false

[spice]
enabled = false

[serial_console]
enabled = false

[oslo_messaging_notifications]
driver = noop

[notifications]
notification_format = unversioned
CONF
    authtoken "$conf" nova
    for section in placement neutron; do
        ksa "$conf" "$section" nova "region_name = RegionOne"
    done
    ksa "$conf" service_user nova "region_name = RegionOne" \
        "send_service_user_token = true"
}

function nova_manage {
    quietly "$LOG/nova-manage.log" "$VENV/bin/nova-manage" \
        --config-file "$ETC/nova.conf" "$@"
}

# start_nova_service NAME: nova-conductor or nova-scheduler.
function start_nova_service {
    start "$1" "$VENV/bin/$1" --config-file "$ETC/nova.conf" \
        --log-file "$LOG/$1.log"
}

function start_nova {
    write_nova_conf
    nova_manage api_db sync
    nova_manage cell_v2 map_cell0
    nova_manage cell_v2 create_cell --name cell1
    nova_manage db sync
    start_uwsgi nova-api 8774 nova.wsgi.osapi_compute:application \
        OS_NOVA_CONFIG_DIR="$ETC" \
        "OS_NOVA_CONFIG_FILES=nova-api-paste.ini;nova.conf"
    start_nova_service nova-conductor
    start_nova_service nova-scheduler
}

# compute_user HOST: the user nova-compute of HOST runs as.
function compute_user {
    if [[ " ${NOVA_USER_HOSTS[*]} " == *" $1 "* ]]; then
        echo "$NOVA_USER"
    else
        echo root
    fi
}

# make_nova_user: the system user nova-compute runs as on the hosts of
# NOVA_USER_HOSTS, as Debian's nova-common makes it, in group libvirt
# (its libvirtd's socket) and in QEMU's group libvirt-qemu: the driver
# gives a backup job's NBD socket directory to QEMU's group, which only
# root or a member of it may do (else no live snapshot).
function make_nova_user {
    if ! getent passwd "$NOVA_USER" >/dev/null; then
        adduser --quiet --system --group --no-create-home \
            --home "$CLOUD_DIR/nova-${NOVA_USER_HOSTS[0]}" "$NOVA_USER"
    fi
    usermod -a -G libvirt,libvirt-qemu "$NOVA_USER"
}

# helper_command HOST: how nova-compute of HOST starts its privileged
# helpers (oslo.privsep appends the context and the socket's path).
function helper_command {
    local cmd=(
        "$VENV/bin/privsep-helper" --config-file "$ETC/nova.conf"
        --config-file "$ETC/nova-compute-$1.conf"
    )
    if [ "$(compute_user "$1")" != root ]; then
        cmd=(sudo "${cmd[@]}")
    fi
    echo "${cmd[*]}"
}

# write_sudoers: user nova may run the venv's privsep-helper, with the
# configuration of its hosts, as root (as distributions allow it
# nova-rootwrap); nothing else.
function write_sudoers {
    local host tmp
    tmp=$(mktemp)
    {
        echo "# tools/cloud.sh: nova-compute of the cloud's hosts" \
            "${NOVA_USER_HOSTS[*]}"
        echo "# starts its oslo.privsep helpers through sudo.  Removed by" \
            "\"tools/cloud.sh down\"."
        for host in "${NOVA_USER_HOSTS[@]}"; do
            echo "$NOVA_USER ALL = (root) NOPASSWD: $(helper_command "$host" \
                | cut -d' ' -f2-) --privsep_context * --privsep_sock_path *"
        done
    } > "$tmp"
    visudo -cqf "$tmp" || { rm -f "$tmp"; die "bad sudoers rules"; }
    install -m 0440 "$tmp" "$SUDOERS"
    rm -f "$tmp"
}

# compute_conf HOST: the nova.conf overlay of compute service HOST, and
# the directories of nova-compute there, its user's.
function compute_conf {
    local host=$1 conf=$ETC/nova-compute-$1.conf user state
    user=$(compute_user "$host")
    state=$CLOUD_DIR/nova-$host
    # QEMU (libvirt-qemu) passes through state and instances to the
    # disks; the rest is nova-compute's own.
    install -d -o "$user" -g "$user" -m 0755 "$state" "$state/instances"
    install -d -o "$user" -g "$user" -m 0750 "$state/locks"
    [ -e "$LOG/nova-compute-$host.log" ] \
        || install -m 0640 -o "$user" -g "$user" /dev/null \
            "$LOG/nova-compute-$host.log"
    install -m 0640 -g "$user" /dev/null "$conf"
    cat > "$conf" <<CONF
[DEFAULT]
host = $host
state_path = $state
instances_path = $state/instances
log_file = $LOG/nova-compute-$host.log
$([ "$host" != local ] || echo "# The scheduler packs by RAM: host local first (nova.conf).
reserved_host_memory_mb = 1024")

[oslo_concurrency]
lock_path = $state/locks

[libvirt]
connection_uri = $(lv_uri "$host")
$([ "$host" != rbd ] || echo "images_type = rbd
images_rbd_pool = $CLOUD_VMS_POOL
images_rbd_ceph_conf = $CEPH_CONF
images_rbd_glance_store_name = rbd1
rbd_user = admin
rbd_secret_uuid = $CEPH_SECRET_UUID")

# The venv's privsep-helper, as root: through sudo when nova-compute runs
# as $NOVA_USER (no rootwrap installed).
[nova_sys_admin]
helper_command = $(helper_command "$host")

[privsep_osbrick]
helper_command = $(helper_command "$host")
CONF
    # The rest is the devstack plugin's, as in a devstack run: the driver,
    # [snapshot] with its directories (made for a non-root nova-compute):
    # three hosts on one machine, each its own ones; with Ceph
    # [snapshot_rbd], whose clones are flattened later, by
    # "nova-snapshot-ext gc" (cli.conf): the image is active at once.
    devstack_plugin "$host" post-config NOVA_CONF="$conf" \
        NOVA_SNAPSHOT_EXT_RBD_FLATTEN=deferred STACK_USER="$user" \
        NOVA_SNAPSHOT_EXT_STATE_PATH="$state/snapshot-ext"
}

# devstack_plugin HOST PHASE [VAR=VALUE...]: run PHASE of "stack" of the
# devstack plugin (settings, then plugin.sh) as devstack would on compute
# host HOST, with nova-compute and Tempest, and devstack-plugin-ceph's
# Ceph for Nova and Glance on host rbd.
function devstack_plugin {
    local host=$1 phase=$2
    shift 2
    (
        export ENABLED_SERVICES=n-cpu,g-api,tempest DEST=$ROOT/.. \
            CEPH_CONF_FILE=$CEPH_CONF CINDER_CEPH_USER=admin \
            GLANCE_CEPH_POOL=$CLOUD_IMAGES_POOL "$@"
        if [ "$host" = rbd ]; then
            export WITH_CEPH_PLUGIN=1 ENABLE_CEPH_NOVA=True \
                ENABLE_CEPH_GLANCE=True
        fi
        # shellcheck source=tools/devstack-functions.sh
        source "$TOOLS_DIR/devstack-functions.sh"
        # shellcheck source=devstack/settings
        source "$ROOT/devstack/settings"
        # shellcheck source=devstack/plugin.sh
        source "$ROOT/devstack/plugin.sh" stack "$phase" > /dev/null
    )
}

# cli_conf: $CLOUD_DIR/cli.conf, the command line's configuration on the
# rbd host: Ceph as Nova's, Glance through Keystone as the admin (gc must
# see every project's images).
function cli_conf {
    umask 077
    cat > "$CLOUD_DIR/cli.conf" <<CONF
[snapshot]
journal_directory = $CLOUD_DIR/nova-rbd/snapshot-ext/snapshots
lock_path = $CLOUD_DIR/nova-rbd/snapshot-ext/locks

[snapshot_rbd]
ceph_conf = $CEPH_CONF
user = admin
glance_pool = $CLOUD_IMAGES_POOL

[snapshot_glance]
auth_type = password
auth_url = $KEYSTONE_URL/v3
username = admin
password = $(secret ADMIN_PASS)
project_name = admin
user_domain_name = Default
project_domain_name = Default
region_name = RegionOne
CONF
    umask 022
}

# --- the compute hosts' libvirtds -------------------------------------------

# lv_uri HOST: the URI of compute host HOST's libvirtd.
function lv_uri {
    echo "qemu+unix:///system?socket=$CLOUD_DIR/libvirt-$1/run/libvirt-sock"
}

# start_libvirtd HOST: a libvirtd (and its virtlogd) of compute host HOST
# in a private mount and UTS namespace: its hostname (nse-cloud-HOST), its
# domain and secret definitions, its run, state, cache and log
# directories are its own; its socket is $CLOUD_DIR/libvirt-HOST/run,
# group libvirt's (0770, no polkit: the group is the permission, as with
# Debian's libvirtd and its polkit rule).  wait_libvirtd HOST waits for it.
function start_libvirtd {
    local host=$1 lv=$CLOUD_DIR/libvirt-$1
    mkdir -p "$lv"/{etc-qemu,lib,cache/qemu,log}
    install -d -m 0700 "$lv/etc-secrets"
    install -d -g libvirt -m 0750 "$lv/run"
    # The stack's libvirtd probed the same QEMU binaries: its capabilities
    # cache spares this one the probe (about 8 s of CPU under TCG).
    if [ -d /var/cache/libvirt/qemu/capabilities ]; then
        cp -a /var/cache/libvirt/qemu/capabilities "$lv/cache/qemu/"
    fi
    cat > "$lv/libvirtd.conf" <<CONF
unix_sock_dir = "$lv/run"
unix_sock_group = "libvirt"
unix_sock_rw_perms = "0770"
auth_unix_rw = "none"
CONF
    cat > "$lv/start" <<'SH'
#!/bin/bash
# Runs inside "unshare --mount --uts --propagation private".
set -e
hostname "$1"
lv=$2
mount -t tmpfs tmpfs /run/libvirt
mount --bind "$lv/etc-qemu" /etc/libvirt/qemu
mount --bind "$lv/etc-secrets" /etc/libvirt/secrets
mount --bind "$lv/lib" /var/lib/libvirt
mount --bind "$lv/cache" /var/cache/libvirt
mount --bind "$lv/log" /var/log/libvirt
mkdir -p /var/lib/libvirt/qemu /var/lib/libvirt/images
chown libvirt-qemu:libvirt-qemu /var/lib/libvirt/qemu
virtlogd -d -p "$lv/run/virtlogd.pid"
exec libvirtd -p "$lv/run/libvirtd.pid" -f "$lv/libvirtd.conf"
SH
    start "libvirtd-$host" unshare --mount --uts --propagation private \
        bash "$lv/start" "nse-cloud-$host" "$lv"
}

function wait_libvirtd {
    await "$READY_TIMEOUT" "libvirtd of host $1" virsh -c "$(lv_uri "$1")" version
    log "libvirtd of host $1 ready (hostname nse-cloud-$1)"
}

# ceph_secret HOST: the libvirt secret with the key of client.admin
# (Nova's [libvirt] rbd_user, rbd_secret_uuid).
function ceph_secret {
    local uri key
    uri=$(lv_uri "$1")
    cat > "$CLOUD_DIR/ceph-secret.xml" <<XML
<secret ephemeral='no' private='yes'>
  <uuid>$CEPH_SECRET_UUID</uuid>
  <usage type='ceph'><name>client.admin secret</name></usage>
</secret>
XML
    virsh -q -c "$uri" secret-define "$CLOUD_DIR/ceph-secret.xml" >/dev/null
    key=$(mktemp)
    ceph-authtool -p -n client.admin "$STACK_DIR/ceph/ceph.client.admin.keyring" \
        > "$key"
    virsh -q -c "$uri" secret-set-value --secret "$CEPH_SECRET_UUID" \
        --file "$key" >/dev/null
    rm -f "$key"
}

# start_compute HOST: nova-compute of HOST, with
# $ETC/nova-compute-HOST-extra.conf last if it exists (tools/bench_cloud.py
# puts Nova's own driver there), as its user (compute_user): setpriv
# execs it in place, its pid and session are those start records.
function start_compute {
    local host=$1 extra=() user as=()
    if [ -e "$ETC/nova-compute-$host-extra.conf" ]; then
        extra=(--config-file "$ETC/nova-compute-$host-extra.conf")
    fi
    user=$(compute_user "$host")
    if [ "$user" != root ]; then
        as=(setpriv --reuid="$user" --regid="$user" --init-groups
            env --chdir="$CLOUD_DIR/nova-$host" HOME="$CLOUD_DIR/nova-$host"
            USER="$user" LOGNAME="$user")
    fi
    start "nova-compute-$host" "${as[@]}" "$VENV/bin/nova-compute" \
        --config-file "$ETC/nova.conf" \
        --config-file "$ETC/nova-compute-$host.conf" "${extra[@]}"
}

# compute_up HOST: nova-compute of HOST is up and its node is mapped
# to the cell (nova-manage cell_v2 discover_hosts).
function compute_up {
    # shellcheck disable=SC1091
    source "$CLOUD_DIR/admin-openrc"
    [ "$("$VENV/bin/openstack" compute service list --service nova-compute \
        --host "$1" -f value -c State)" = up ] || return 1
    "$VENV/bin/nova-manage" --config-file "$ETC/nova.conf" \
        cell_v2 discover_hosts >> "$LOG/nova-manage.log" 2>&1 || return 1
    # NOTE: not "openstack ... | grep -q": grep leaves at its first match
    # and, under pipefail, the SIGPIPE of the openstack command writing the
    # next line fails the check, every time, for a host listed before the
    # other (it was the cause of "nova-compute on host local not ready").
    local hypervisors
    hypervisors=$("$VENV/bin/openstack" hypervisor list -f value \
        -c "Hypervisor Hostname") || return 1
    grep -qx "nse-cloud-$1" <<< "$hypervisors"
}

function cmd_up {
    require_root "it starts services and libvirt domains"
    bash "$TOOLS_DIR/stack.sh" status >/dev/null \
        || die "the stack is not running: run tools/stack.sh up first"
    [ -s "$CEPH_CONF" ] || die "no Ceph at $CEPH_CONF: run tools/stack.sh up"
    if cmd_status >/dev/null 2>&1; then
        log "already running"
        return 0
    fi
    cmd_down >/dev/null 2>&1 || true
    local t0=$SECONDS
    mkdir -p "$CLOUD_DIR" "$ETC" "$LOG" "$RUN"
    command -v mariadbd >/dev/null && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] \
        || die "MariaDB or RabbitMQ missing: run tools/install-deps.sh"
    cmd_install
    make_secrets
    make_nova_user
    # The libvirtds start with the rest, and are waited for when the
    # compute hosts need them.
    local host
    for host in "${COMPUTE_HOSTS[@]}"; do
        start_libvirtd "$host"
    done
    start_mysqld
    start_epmd
    start_rabbitmq
    start_ceph_mgr
    start_keystone
    (cd "$ROOT" && "$VENV/bin/python" -m tools.cloud_setup identity)
    start_glance
    start_placement
    start_neutron
    start_nova
    for host in "${COMPUTE_HOSTS[@]}"; do
        compute_conf "$host"
    done
    write_sudoers
    cli_conf
    for host in "${COMPUTE_HOSTS[@]}"; do
        wait_libvirtd "$host"
    done
    ceph_secret rbd
    for host in "${COMPUTE_HOSTS[@]}"; do
        start_compute "$host"
    done
    for host in "${COMPUTE_HOSTS[@]}"; do
        await "$READY_TIMEOUT" "nova-compute on host $host" compute_up "$host"
    done
    (cd "$ROOT" && "$VENV/bin/python" -m tools.cloud_setup resources)
    # Our plugin's Tempest options, by the devstack plugin: the direct
    # snapshot tests boot their server on the rbd host.
    local tempest_conf=$CLOUD_DIR/tempest/etc/tempest.conf
    devstack_plugin rbd test-config TEMPEST_CONFIG="$tempest_conf"
    iniset "$tempest_conf" nova_snapshot_ext rbd_availability_zone rbd
    # The same cloud with Tempest's servers in zone rbd (the add-location
    # scenario: the direct snapshot registers its image's location).
    cp "$tempest_conf" "${tempest_conf%.conf}-rbd.conf"
    iniset "${tempest_conf%.conf}-rbd.conf" compute compute_volume_common_az rbd
    cmd_status > /dev/null || { cmd_status >&2; die "a service died"; }
    log "cloud ready in $((SECONDS - t0)) s: source $CLOUD_DIR/openrc"
}

function delete_domains {
    local uri dom
    local host
    for host in "${COMPUTE_HOSTS[@]}"; do
        uri=$(lv_uri "$host")
        timeout 10 virsh -q -c "$uri" version >/dev/null 2>&1 || continue
        for dom in $(virsh -q -c "$uri" list --all --name); do
            [[ "$dom" == instance-* ]] || continue
            virsh -q -c "$uri" destroy "$dom" >/dev/null 2>&1 || true
            virsh -q -c "$uri" undefine --managed-save --nvram "$dom" \
                >/dev/null 2>&1 || true
        done
    done
}

function cmd_down {
    local i name pid
    # Everything is deleted afterwards: no need to wait long for a
    # graceful stop.
    local STOP_TIMEOUT=5
    delete_domains
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
        name=${SERVICES[$i]}
        if pid=$(service_pid "$name"); then
            if [ "$name" = rabbitmq ]; then
                HOME=$CLOUD_DIR/rabbitmq/home \
                    /usr/lib/rabbitmq/bin/rabbitmqctl -n rabbit@localhost \
                    stop > /dev/null 2>&1 || true
            fi
            # The whole session: uWSGI workers, QEMU of the rbd host.
            kill -TERM -- "-$pid" 2>/dev/null || true
            stop_pid "$pid" "$(cat "/proc/$pid/comm" 2>/dev/null || echo "$name")"
            kill -KILL -- "-$pid" 2>/dev/null || true
            log "$name stopped"
        fi
        rm -f "$RUN/$name.pid"
        if [[ "$name" == libvirtd-* ]]; then
            if pid=$(pidfile_pid \
                    "$CLOUD_DIR/${name/libvirtd/libvirt}/run/virtlogd.pid" \
                    virtlogd); then
                stop_pid "$pid" virtlogd
            fi
        fi
    done
    GLANCE_VENV=$VENV bash "$TOOLS_DIR/glance.sh" stop cloud >/dev/null 2>&1 || true
    rm -f "$SUDOERS"
    delete_pools
    if [ -d "$CLOUD_DIR" ]; then
        find "$CLOUD_DIR" -mindepth 1 -maxdepth 1 ! -name venv \
            -exec rm -rf {} +
    fi
}

function cmd_status {
    report_status service_pid "${SERVICES[@]}"
}

function cmd_restart {
    local name=${1:?service name}
    local pid
    if pid=$(service_pid "$name"); then
        kill -TERM -- "-$pid" 2>/dev/null || true
        stop_pid "$pid" "$(cat "/proc/$pid/comm")"
    fi
    case $name in
        nova-compute-*) start_compute "${name#nova-compute-}" ;;
        nova-conductor|nova-scheduler) start_nova_service "$name" ;;
        *) die "restart of $name is not supported" ;;
    esac
    log "$name started again"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    restart) shift; cmd_restart "$@" ;;
    install) cmd_install ;;
    *) echo "usage: $0 up|down|status|restart SERVICE|install" >&2; exit 2 ;;
esac
