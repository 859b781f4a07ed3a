# Copyright 2026 The nova-snapshot-ext Authors
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

"""The project's real Ceph, as the functional tests see it.

``tools/stack.sh up`` starts the ``main`` cluster; tests that need a
second cluster start one with ``tools/ceph.sh up NAME``.
"""

import base64
import os
import re
import subprocess
import xml.etree.ElementTree as ET

import libvirt

from nova_snapshot_ext.storage import rbd as rbd_storage
from tests.functional import guest as guest_mod

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CEPH_SH = os.path.join(ROOT, 'tools', 'ceph.sh')
SECRET_USAGE = 'client.admin nse-tests'


def ceph_dir(name: str = 'main') -> str:
    base = 'ceph' if name == 'main' else 'ceph-%s' % name
    return os.path.join(guest_mod.stack_dir(), base)


def ceph_conf(name: str = 'main') -> str:
    """The cluster's ceph.conf.

    :raises StackMissing: the cluster is not up.
    """
    path = os.path.join(ceph_dir(name), 'ceph.conf')
    if not os.path.exists(path):
        raise guest_mod.StackMissing(
            'Ceph cluster %s is not up: run "tools/stack.sh up" as root '
            'first' % name)
    return path


def ceph_sh(*args: str) -> None:
    done = subprocess.run(['bash', CEPH_SH, *args], capture_output=True,
                          text=True)
    if done.returncode:
        raise guest_mod.StackMissing('tools/ceph.sh %s failed: %s' % (
            ' '.join(args), done.stderr.strip()))


def ceph(conf: str, *args: str) -> str:
    return guest_mod.run('ceph', '-c', conf, *args).strip()


def mon_v1(conf: str) -> tuple[str, int]:
    """Host and port of the cluster's monitor (msgr v1, which QEMU's
    librbd speaks as well).
    """
    with open(conf) as f:
        match = re.search(r'^mon host = .*v1:([\d.]+):(\d+)', f.read(), re.M)
    return match.group(1), int(match.group(2))


def set_rbd_conf(conf, name: str = 'main') -> None:
    """Point ``conf``'s [snapshot_rbd] group at cluster ``name``."""
    conf.set_override('ceph_conf', ceph_conf(name), group='snapshot_rbd')
    conf.set_override('user', 'admin', group='snapshot_rbd')


def secret_uuid(conn: libvirt.virConnect, conf: str) -> str:
    """A libvirt secret holding client.admin's key, for QEMU."""
    key = base64.b64decode(ceph(conf, 'auth', 'get-key', 'client.admin'))
    try:
        secret = conn.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_CEPH,
                                          SECRET_USAGE)
    except libvirt.libvirtError:
        el = ET.Element('secret', ephemeral='no', private='yes')
        usage = ET.SubElement(el, 'usage', type='ceph')
        ET.SubElement(usage, 'name').text = SECRET_USAGE
        secret = conn.secretDefineXML(ET.tostring(el, encoding='unicode'))
    secret.setValue(key)
    return secret.UUIDString()


def import_disk(conn: libvirt.virConnect, disks: guest_mod.Disks,
                pool: str, name: str,
                conf: str | None = None) -> guest_mod.Disks:
    """Move a raw test disk into RBD as ``pool/name``; the local file is
    removed.
    """
    conf = conf or ceph_conf()
    guest_mod.run('rbd', '-c', conf, 'import', '--no-progress',
                  '--image-format', '2', disks.path, '%s/%s' % (pool, name))
    os.unlink(disks.path)
    return network_disks(conn, disks, pool, name, conf)


def network_disks(conn: libvirt.virConnect, disks: guest_mod.Disks,
                  pool: str, name: str,
                  conf: str | None = None) -> guest_mod.Disks:
    conf = conf or ceph_conf()
    host, port = mon_v1(conf)
    return guest_mod.Disks(
        path='%s/%s' % (pool, name), format='raw', size=disks.size,
        data_sha256=disks.data_sha256,
        rbd={'host': host, 'port': str(port),
             'secret': secret_uuid(conn, conf), 'user': 'admin'})


def remove_disk(spec: str, conf: str | None = None) -> None:
    """Remove RBD image ``pool/image`` and its snapshots, if it exists."""
    conf = conf or ceph_conf()
    for cmd in (('snap', 'purge'), ('rm', '--no-progress')):
        subprocess.run(['rbd', '-c', conf, *cmd, spec], capture_output=True)


def export(conf: str, spec: str, path: str) -> str:
    """Write RBD image (or snapshot) ``pool/image[@snap]`` to ``path``."""
    guest_mod.run('rbd', '-c', conf, 'export', '--no-progress', spec, path)
    return path


def driver(conf) -> rbd_storage.RBDDriver:
    return rbd_storage.RBDDriver(conf)


def our_snaps(drv: rbd_storage.RBDDriver, pool: str, name: str) -> list:
    return [s.name for s in drv.snaps(pool, name)
            if s.name.startswith('nse-')]
