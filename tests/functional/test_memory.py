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

"""``snapshot --memory`` on the real libvirt: the guest's memory and every
disk at one point in time while it runs on, and ``revert``/``restore``
resuming it there: the counter the guest writes goes on from its value
in the snapshot, with no boot in between.
"""

import os
import re
import shutil
import signal
import stat
import subprocess
import uuid

import libvirt
import pytest

from nova_snapshot_ext.backends import memory
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.stores import file as file_store
from tests.functional.conftest import make_conf
from tests.functional import guest as guest_mod
from tests.functional.test_restore import Cli
from tests.functional.test_restore import new_name  # noqa: F401
from tests.functional.test_restore import serial_of
from tests.functional.test_snapshot import take
from tests import polling

#: The guest prints its counter at every multiple of this.
PRINT_EVERY = 500


@pytest.fixture(scope='module')
def mconf(workroot):
    return make_conf(os.path.join(workroot, 'memory-%s' %
                                  uuid.uuid4().hex[:6]))


@pytest.fixture(scope='module')
def mguest(conn, workroot):
    name = 'mem-%s' % uuid.uuid4().hex[:6]
    path = os.path.join(workroot, name)
    g = guest_mod.TestGuest(conn, path, name, fmt='qcow2', data_mb=16)
    guest_mod.add_raw_disk(g, 4 * guest_mod.MiB)
    g.start()
    yield g
    g.remove()
    shutil.rmtree(path, ignore_errors=True)


def running(g):
    if not g.dom.isActive():
        g.start()
    return g


def overlays(g):
    return [n for n in os.listdir(g.workdir)
            if n.endswith(memory.OVERLAY_SUFFIX)]


def sources(xml):
    return re.findall(r"<source file='([^']+)'", xml)


def counters_after(text):
    return [int(n) for n in re.findall(r'^CTR (\d+)', text, re.M)]


def first_counter(read):
    """The first counter ``read()`` shows, once it shows one."""
    return polling.wait_until(
        lambda: counters_after(read()), 60, 0.2,
        lambda: 'the guest prints no counter:\n%s' % read()[-2000:])[0]


def test_the_guest_runs_on_its_own_disks_and_the_image_holds_its_memory(
        mconf, mguest):
    g = running(mguest)
    before_xml, boots = g.inactive_xml(), g.boots()
    result = take(mconf, g, name='with-memory', memory=True)

    assert result.live_copy_style == 'memory'
    assert [d['disk'] for d in result.disks] == ['vda', 'vdb']
    saved = os.path.join(os.path.dirname(result.image), file_store.MEMORY)
    assert os.path.getsize(saved) > 1024 * 1024
    assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600
    check = guest_mod.check_image(result.image, 'qcow2', g.disks.size)
    assert check.point_in_time, check.counters
    # NOTE: the guest never stopped: no boot, the counter goes on, and it
    # is back on its own files with nothing of the overlays left.
    assert g.dom.isActive() and g.boots() == boots
    g.wait_counter(max(g.last_counter(), check.last) + 1)
    assert g.inactive_xml() == before_xml
    assert sources(g.dom.XMLDesc(0))[:1] == [g.disks.path]
    assert overlays(g) == []
    assert not g.dom.blockJobInfo('vda', 0)
    assert journal.paths(mconf.snapshot.journal_directory) == []
    listed = Cli(mconf)('list', g.name).stdout
    assert 'with memory' in listed and result.image_id in listed


def test_revert_resumes_the_guest_where_the_snapshot_was(mconf, mguest):
    g = running(mguest)
    result = take(mconf, g, name='resume-me', memory=True)
    at = guest_mod.check_image(result.image, 'qcow2', g.disks.size).last
    g.wait_counter(at + 3 * PRINT_EVERY)
    boots, seen = g.boots(), len(g.serial_text())

    out = Cli(mconf)('revert', g.name, result.image_id, '--force').stdout
    assert 'runs on from its memory' in out, out
    printed = first_counter(lambda: g.serial_text()[seen:])
    # NOTE: from the snapshot's value on, not from where it was stopped
    # (at + 1500 and more) nor from 1 (a boot).
    assert at < printed <= at + PRINT_EVERY, (at, printed)
    assert g.boots() == boots
    assert g.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


@pytest.mark.parametrize('then', ['running', 'stopped'])
def test_a_killed_snapshot_with_memory_leaves_the_guest_on_its_own_disks(
        mconf, mguest, then):
    g = running(mguest)
    cli = Cli(mconf)
    images = cli('list', g.name).stdout
    env = dict(os.environ, **{journal.TEST_STOP_AFTER:
                              journal.MEMORY_OVERLAY})
    proc = subprocess.Popen(
        cli.cmd('snapshot', g.name, '--name', 'killed', '--memory'),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    guest_mod.wait_stopped(proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert len(overlays(g)) == 2
    assert sources(g.dom.XMLDesc(0))[0].endswith(memory.OVERLAY_SUFFIX)
    if then == 'stopped':
        g.dom.destroy()

    out = cli('recover').stdout
    assert 'commit overlays' in out, out
    assert overlays(g) == []
    assert journal.paths(mconf.snapshot.journal_directory) == []
    assert cli('list', g.name).stdout == images
    assert sources(g.inactive_xml())[0] == g.disks.path
    if then == 'running':
        assert sources(g.dom.XMLDesc(0))[0] == g.disks.path
        g.wait_counter(g.last_counter() + 1)
    else:
        # NOTE: committed offline: the disk holds every write the guest
        # made, one point in time, and boots.
        check = guest_mod.check_image(g.disks.path, 'qcow2', g.disks.size)
        assert check.point_in_time
        g.start()


def test_bad_input_is_one_line_and_leaves_nothing(mconf, mguest):
    g = running(mguest)
    cli = Cli(mconf)
    images = cli('list', g.name).stdout
    g.dom.destroy()
    for args, words in [
            ((), 'no memory to save'),
            (('--incremental',), 'not incremental'),
            (('--store', 'glance+http://127.0.0.1:9'), 'keeps no memory')]:
        done = cli('snapshot', g.name, '--name', 'bad', '--memory', *args,
                   rc=1)
        assert done.stderr.count('\n') == 1 and words in done.stderr, \
            done.stderr
    assert cli('list', g.name).stdout == images
    assert overlays(g) == []
    assert journal.paths(mconf.snapshot.journal_directory) == []
    assert g.dom.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF


def test_restore_resumes_the_memory_as_the_guest_once_it_is_gone(
        mconf, mguest, new_name, workdir, conn):  # noqa: F811
    g = running(mguest)
    cli = Cli(mconf)
    result = take(mconf, g, name='move-me', memory=True)
    at = guest_mod.check_image(result.image, 'qcow2', g.disks.size).last

    out = cli('restore', result.image_id, '--as', new_name, '--disk-dir',
              workdir).stdout
    assert 'memory was not resumed' in out and g.name in out, out
    assert not conn.lookupByName(new_name).isActive()

    old_uuid = g.dom.UUIDString()
    g.remove()
    out = cli('restore', result.image_id, '--as', g.name, '--disk-dir',
              workdir).stdout
    assert 'resumed from its memory' in out, out
    dom = conn.lookupByName(g.name)
    assert dom.UUIDString() == old_uuid
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert sources(dom.XMLDesc(0))[0] == os.path.join(
        workdir, '%s-vda.qcow2' % g.name)
    serial = os.path.join(workdir, '%s-serial.log' % g.name)
    printed = first_counter(lambda: serial_of(serial))
    assert at < printed <= at + PRINT_EVERY, (at, printed)
    assert 'TINYGUEST READY' not in serial_of(serial)
