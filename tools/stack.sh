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

# Run a real libvirtd + virtlogd (Debian 12, monolithic libvirtd) for the
# functional tests, without systemd or D-Bus.  Run as root.
#
#   tools/stack.sh up       install packages (tools/install-deps.sh), start
#                           virtlogd and libvirtd, wait for qemu:///system,
#                           build the test guest (tools/build-guest.sh),
#                           start a fresh Ceph cluster (tools/ceph.sh up)
#                           and two Glances (tools/glance.sh): "main"
#                           (file store, no auth) and "ceph" (rbd store
#                           on that cluster, every caller a service user)
#   tools/stack.sh down     stop every Glance and Ceph, destroy + undefine
#                           the nse-* test domains, stop libvirtd and
#                           virtlogd, TERM leftover nse-* QEMUs
#   tools/stack.sh status   exit 0 if both daemons run, 3 otherwise
#   tools/stack.sh restart-libvirtd
#                           stop the stack's libvirtd (by its pid file) and
#                           start it again; running guests go on
#
# up and down are idempotent; down exits 0 when nothing is running.
#
# Environment:
#   STACK_DIR         state dir (default /var/tmp/nova-snapshot-ext-stack),
#                     made world-traversable (0755): QEMU runs as
#                     libvirt-qemu and must reach the guest files and the
#                     test images below it
#   GUEST_DIR         default $STACK_DIR/guest
#   NSE_SKIP_INSTALL  1 = do not run tools/install-deps.sh
#
# Layout: $STACK_DIR/libvirt/{libvirtd,virtlogd}.{pid,log}, libvirtd.conf,
# $STACK_DIR/guest/{vmlinuz,initrd.gz}, $STACK_DIR/cache/*.deb.
#
# Notes:
# - libvirtd uses its own (empty) config file; /etc/libvirt/libvirtd.conf
#   and qemu.conf are not modified.  Only root can connect: the default
#   polkit auth for other users needs D-Bus.
# - virtlogd must run before any domain starts (qemu.conf stdio_handler
#   defaults to "logd").
# - Stopping libvirtd does not stop QEMU, hence the order in "down".
# - Processes are only ever signalled by recorded PID.

set -euo pipefail

TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tools/functions.sh
source "$TOOLS_DIR/functions.sh"
GUEST_DIR=$(realpath -m -- "${GUEST_DIR:-$STACK_DIR/guest}")
LV_DIR=$STACK_DIR/libvirt
URI=qemu:///system
DOMAIN_PREFIX=nse-
QEMU_RUN_DIR=/run/libvirt/qemu
# The first start after an install (or a QEMU/libvirt upgrade) probes the
# QEMU binaries before answering: about 8 s on a 2-core CI VM.
READY_TIMEOUT=30
STOP_TIMEOUT=10

export STACK_DIR GUEST_DIR

# daemon_pid NAME: print the recorded PID of NAME if it is running.
function daemon_pid {
    pidfile_pid "$LV_DIR/$1.pid" "$1"
}

# start_daemon NAME [ARGS...]: start NAME daemonized unless it runs,
# prefixed with the command in the LAUNCH array (if any).
function start_daemon {
    local name=$1 pidfile=$LV_DIR/$1.pid pid
    shift
    if pid=$(daemon_pid "$name"); then
        log "$name already running (pid $pid)"
        return 0
    fi
    rm -f "$pidfile"
    # The daemon does chdir / first, so the pid file path must be
    # absolute.  With -d the parent returns once the pid file is written
    # and the socket is listening; the drivers may still be initialising.
    if ! LIBVIRT_LOG_OUTPUTS="3:file:$LV_DIR/$name.log" \
            "${LAUNCH[@]}" "$name" -d -p "$pidfile" "$@"; then
        show_log "$name"
        die "could not start $name"
    fi
    if ! wait_for 5 daemon_pid "$name"; then
        show_log "$name"
        die "$name did not come up (no live pid in $pidfile)"
    fi
    log "$name started (pid $(daemon_pid "$name"))"
}

function show_log {
    local f=$LV_DIR/$1.log
    if [ -s "$f" ]; then
        echo "stack: last lines of $f:" >&2
        tail -n 20 "$f" >&2
    fi
}

function virsh_ok {
    timeout 10 virsh -q -c "$URI" version >/dev/null 2>&1
}

# pin_launch: set LAUNCH to pin a daemon to the first CPU this shell
# may use (see cmd_up).
function pin_launch {
    local cpu
    cpu=$(awk '$1 == "Cpus_allowed_list:" { sub(/[-,].*/, "", $2);
                                            print $2 }' /proc/self/status)
    LAUNCH=(taskset -c "$cpu")
}

# start_libvirtd: start the stack's libvirtd and wait until it answers.
function start_libvirtd {
    start_daemon libvirtd -f "$LV_DIR/libvirtd.conf"
    if ! wait_for "$READY_TIMEOUT" virsh_ok; then
        show_log libvirtd
        die "libvirtd does not answer on $URI after ${READY_TIMEOUT}s"
    fi
}

# cmd_restart_libvirtd: stop the stack's libvirtd (the one whose pid file
# is ours; never another libvirtd of this machine) and start it again with
# the same arguments.  Running guests go on: libvirtd re-attaches to them.
function cmd_restart_libvirtd {
    require_root "it restarts libvirtd"
    local pid cmdline
    if pid=$(daemon_pid libvirtd); then
        cmdline=$(tr '\0' ' ' < "/proc/$pid/cmdline")
        [[ "$cmdline" == *" $LV_DIR/libvirtd.pid "* ]] \
            || die "pid $pid is not the libvirtd of $LV_DIR"
    fi
    stop_daemon libvirtd
    pin_launch
    start_libvirtd
    log "libvirtd restarted (pid $(daemon_pid libvirtd))"
}

function cmd_up {
    require_root "it starts libvirtd, Ceph and Glance"
    if [ "${NSE_SKIP_INSTALL:-0}" != 1 ]; then
        "$TOOLS_DIR/install-deps.sh"
    fi
    command -v libvirtd >/dev/null || die "libvirtd not installed"
    command -v virtlogd >/dev/null || die "virtlogd not installed"

    mkdir -p "$LV_DIR"
    chmod 0755 "$STACK_DIR"
    # Guests have no NIC: never start the NAT network (dnsmasq, iptables).
    rm -f /etc/libvirt/qemu/networks/autostart/default.xml

    LAUNCH=()
    start_daemon virtlogd
    if [ ! -e "$LV_DIR/libvirtd.conf" ]; then
        echo "# nova-snapshot-ext test stack: built-in defaults" \
            > "$LV_DIR/libvirtd.conf"
    fi
    # libvirtd keeps the QEMU capabilities in /var/cache/libvirt/qemu and
    # re-probes every QEMU binary (about 8 s under TCG) when the host CPUID
    # differs from the cached one.  On CPUs with CPUID leaf 0x1f that data
    # includes the x2APIC ID of the CPU libvirtd happens to run on, so pin
    # it to one CPU.  QEMU is not affected: libvirt resets its affinity.
    pin_launch
    # Without udev, /dev/kvm stays root:root 0600. The QEMU probe (run as
    # root) then finds KVM, while the check of the cached capabilities (as
    # libvirt-qemu, in group kvm) does not, so libvirtd re-probes QEMU at
    # almost every call: 32 s per defineXML, 3.9 s per virConnectGetVersion
    # on these machines.  Give it the owner and mode Debian's udev rule
    # gives it (50-udev-default.rules); guests still run under TCG.
    if [ -c /dev/kvm ] && getent group kvm >/dev/null \
        && [ "$(stat -c %G /dev/kvm)" = root ]; then
        chgrp kvm /dev/kvm
        chmod 0660 /dev/kvm
        log "/dev/kvm: group kvm, mode 0660, as udev would set it"
    fi
    start_libvirtd
    log "libvirt ready on $URI ($(virsh -q -c "$URI" version \
        | sed -n 's/^Using library: //p; s/^Running hypervisor: //p' \
        | paste -sd, - | sed 's/,/, /g'))"

    local recipe
    recipe=$("$TOOLS_DIR/build-guest.sh" recipe)
    if [ -s "$GUEST_DIR/vmlinuz" ] && [ -s "$GUEST_DIR/initrd.gz" ] \
            && [ "$(cat "$GUEST_DIR/recipe" 2>/dev/null)" = "$recipe" ]; then
        log "guest already built in $GUEST_DIR"
    else
        "$TOOLS_DIR/build-guest.sh"
    fi

    "$TOOLS_DIR/ceph.sh" up
    "$TOOLS_DIR/glance.sh" install
    "$TOOLS_DIR/glance.sh" start main
    # Glance on the same Ceph cluster, as Nova's direct snapshots need it.
    GLANCE_FLAVOR=service GLANCE_CEPH_CONF=$STACK_DIR/ceph/ceph.conf \
        "$TOOLS_DIR/glance.sh" start ceph
}

function remove_test_domains {
    local dom
    daemon_pid libvirtd >/dev/null || return 0
    virsh_ok || return 0
    for dom in $(timeout 30 virsh -q -c "$URI" list --all --name \
            || true); do
        [[ "$dom" == "$DOMAIN_PREFIX"* ]] || continue
        timeout 60 virsh -q -c "$URI" destroy "$dom" >/dev/null 2>&1 || true
        if undefine_domain "$dom"; then
            log "removed domain $dom"
        else
            log "could not undefine domain $dom"
        fi
    done
}

# undefine_domain NAME: with all the cleanup flags this libvirt accepts.
function undefine_domain {
    local -a flags=(--managed-save --snapshots-metadata --nvram)
    while true; do
        if timeout 60 virsh -q -c "$URI" undefine "$1" "${flags[@]}" \
                >/dev/null 2>&1; then
            return 0
        fi
        [ ${#flags[@]} -gt 0 ] || return 1
        unset "flags[-1]"
    done
}

function stop_daemon {
    local name=$1 pid
    if pid=$(daemon_pid "$name"); then
        stop_pid "$pid" "$name"
        log "$name stopped (pid $pid)"
    fi
    rm -f "$LV_DIR/$name.pid"
}

function stop_leftover_qemu {
    local pidfile pid dom
    for pidfile in "$QEMU_RUN_DIR/$DOMAIN_PREFIX"*.pid; do
        [ -e "$pidfile" ] || continue
        dom=$(basename "$pidfile" .pid)
        pid=$(cat "$pidfile" 2>/dev/null) || continue
        if alive "$pid" qemu; then
            log "stopping leftover qemu of $dom (pid $pid)"
            stop_pid "$pid" qemu
        fi
    done
}

function cmd_down {
    require_root "it stops libvirtd, Ceph and Glance"
    "$TOOLS_DIR/glance.sh" stop-all
    local conf
    for conf in "$STACK_DIR"/ceph-*/ceph.conf; do
        [ -e "$conf" ] || continue
        conf=$(dirname "$conf")
        "$TOOLS_DIR/ceph.sh" down "${conf##*/ceph-}"
    done
    "$TOOLS_DIR/ceph.sh" down
    remove_test_domains
    stop_daemon libvirtd
    stop_daemon virtlogd
    stop_leftover_qemu
    return 0
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) report_status daemon_pid virtlogd libvirtd ;;
    restart-libvirtd) cmd_restart_libvirtd ;;
    *)
        echo "usage: $0 up|down|status|restart-libvirtd" >&2
        exit 2
        ;;
esac
