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

"""The stack's Ceph cluster is what the rbd backend needs: reachable
through the rados/rbd bindings in this venv, RBD pools ``vms`` and
``images``, and a QEMU that reads RBD images.
"""

import json
import os
import subprocess
import time
import uuid

import pytest
import rados
import rbd

from nova_snapshot_ext import exception
from nova_snapshot_ext.storage import rbd as rbd_storage
from tests.functional import conftest
from tests.functional import guest as guest_mod

MiB = 1024 * 1024


def ceph_conf() -> str:
    return os.path.join(guest_mod.stack_dir(), 'ceph', 'ceph.conf')


def test_cluster_pools_and_qemu_rbd():
    conf = ceph_conf()
    assert os.path.exists(conf), 'run "tools/stack.sh up" as root first'
    fsid = subprocess.run(['ceph', '-c', conf, 'fsid'], check=True,
                          capture_output=True, text=True).stdout.strip()
    with rados.Rados(conffile=conf, rados_id='admin') as cluster:
        assert cluster.get_fsid() == fsid
        assert {'vms', 'images'} <= set(cluster.list_pools())
        with cluster.open_ioctx('vms') as ioctx:
            assert ioctx.application_list() == ['rbd']
            name = 'nse-smoke-%s' % os.urandom(4).hex()
            rbd.RBD().create(ioctx, name, 8 * MiB, old_format=False,
                             features=rbd.RBD_FEATURE_LAYERING)
            try:
                with rbd.Image(ioctx, name) as image:
                    image.write(b'x' * 4096, 0)
                info = json.loads(subprocess.run(
                    ['qemu-img', 'info', '--output=json', '-f', 'raw',
                     'rbd:vms/%s:id=admin:conf=%s' % (name, conf)],
                    check=True, capture_output=True, text=True).stdout)
                assert info['virtual-size'] == 8 * MiB
            finally:
                rbd.RBD().remove(ioctx, name)


def test_unreachable_monitors_fail_within_the_timeout(tmp_path):
    """librados would wait 300 s; [snapshot_rbd] connect_timeout bounds it."""
    bad = tmp_path / 'ceph.conf'
    bad.write_text('[global]\nfsid = %s\nmon host = 127.0.0.1:1\n'
                   'auth client required = none\n' % uuid.uuid4())
    conf = conftest.make_conf(str(tmp_path))
    conf.set_override('ceph_conf', str(bad), group='snapshot_rbd')
    conf.set_override('connect_timeout', 2, group='snapshot_rbd')
    started = time.monotonic()
    with pytest.raises(exception.CephUnavailable) as e:
        rbd_storage.RBDDriver(conf).fsid()
    assert time.monotonic() - started < 10
    assert str(e.value) == (
        'Cannot use Ceph as client.admin with %s: no monitor answered '
        'within 2 s. Check [snapshot_rbd] ceph_conf, user and the '
        'keyring.' % bad)
