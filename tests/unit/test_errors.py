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

"""libvirt errors become exceptions an operator can act on."""

import libvirt
import pytest

from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import guest


def lv_error(code, message):
    e = libvirt.libvirtError(message)
    e.err = (code, libvirt.VIR_FROM_QEMU, message, 2, None, None, None, 0,
             0)
    return e


@pytest.mark.parametrize('code,active,cls', [
    (libvirt.VIR_ERR_NO_DOMAIN, None, exception.GuestGone),
    (libvirt.VIR_ERR_OPERATION_INVALID, False, exception.GuestGone),
    (libvirt.VIR_ERR_OPERATION_INVALID, True, exception.LibvirtFailed),
    (libvirt.VIR_ERR_AGENT_UNRESPONSIVE, True, exception.QuiesceFailed),
    (libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED, True, exception.QuiesceFailed),
    (libvirt.VIR_ERR_INTERNAL_ERROR, True, exception.LibvirtFailed),
])
def test_translate(code, active, cls):
    err = guest.translate(lv_error(code, 'msg from\nlibvirt'), 'dom',
                          'stop the block copy of', active)
    assert type(err) is cls
    assert 'dom' in str(err)
    assert 'msg from libvirt' in str(err)
    assert '\n' not in str(err)


def test_messages_are_one_line_and_say_what_to_do():
    e = exception.BlockJobActive(guest='g', disk='vda', job='type 2')
    assert 'virsh blockjob g vda --abort' in str(e)
    e = exception.QuiesceFailed(guest='g', reason='no\nagent')
    assert '\n' not in str(e)
    assert 'quiesce = auto' in str(e)


def test_disk_lookup_from_xml():
    xml = """<domain><devices>
      <disk type='file' device='cdrom'><driver type='raw'/>
        <source file='/iso'/><target dev='hdc'/></disk>
      <disk type='network' device='disk'><driver type='raw'/>
        <source protocol='rbd' name='vms/abc_disk'/><target dev='vda'/>
      </disk></devices></domain>
      """

    class Dom:
        def name(self):
            return 'g'

        def UUIDString(self):
            return 'u'

        def XMLDesc(self, flags):
            return xml

    disk = guest.Guest(Dom()).root_disk()
    assert disk == guest.Disk(target='vda', source_type='network',
                              path='vms/abc_disk', format='raw',
                              protocol='rbd')
