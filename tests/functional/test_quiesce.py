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

"""Quiesced snapshots of guests that run a real QEMU guest agent.

The agent guests (``TestGuest(agent=...)``, see ``tools/build-guest.sh``)
run qemu-ga with an ext4 filesystem for it to freeze, and a writer on that
filesystem that prints ``FS <n>`` about once a second: beats that go on
after a snapshot show, without asking the agent, that nothing is left
frozen. The ``hang`` guest's agent never returns from a freeze (its freeze
hook sleeps forever before anything is frozen), and answers nothing after.
"""

import os
import shutil
import threading
import time
import uuid

import pytest

from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from tests.functional import ceph_stack
from tests.functional import glance_stack
from tests.functional import guest as guest_mod
from tests.functional.test_rbd import assert_one_point_in_time
from tests.functional.test_rbd import ceph_glance  # noqa: F401
from tests.functional.test_rbd import drv  # noqa: F401
from tests.functional.test_rbd import IMAGES
from tests.functional.test_rbd import rconf  # noqa: F401
from tests.functional.test_rbd import VMS
from tests.functional import test_recover
from tests.functional.test_snapshot import assert_good_image
from tests.functional.test_snapshot import assert_guest_as_before
from tests.functional.test_snapshot import assert_nothing_left
from tests.functional.test_snapshot import GuestBefore
from tests.functional.test_snapshot import take
from tests import polling

#: [snapshot] quiesce_timeout for the hanging agent (seconds).
HANG_TIMEOUT = 5
#: What a snapshot of the hanging agent's guest may take at most: the
#: freeze timeout, a thaw that finds the agent silent (libvirt's 5 s
#: guest-sync), and the copy itself.
HANG_BOUND = 60


def _agent_guest(conn, workroot, kind, agent, **kwargs):
    name = '%s-%s' % (kind, uuid.uuid4().hex[:6])
    path = os.path.join(workroot, name)
    g = guest_mod.TestGuest(conn, path, name, agent=agent, **kwargs)
    g.start()
    return g, path


@pytest.fixture(scope='module')
def agent_guest(conn, workroot):
    g, path = _agent_guest(conn, workroot, 'qga', 'on')
    yield g
    g.remove()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope='module')
def hang_guest(conn, workroot):
    g, path = _agent_guest(conn, workroot, 'qga-hang', 'hang')
    yield g
    g.remove()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope='module')
def rbd_agent_guest(conn, workroot):
    g, path = _agent_guest(
        conn, workroot, 'qga-rbd', 'on', fmt='raw',
        disks=lambda d, n: ceph_stack.import_disk(conn, d, VMS, n))
    yield g
    g.remove()
    ceph_stack.remove_disk(g.disks.path)
    shutil.rmtree(path, ignore_errors=True)


def assert_not_frozen(g, ask_agent=True):
    """The guest's filesystem takes writes again (its writer's beats go
    on) and, when the agent can answer, the agent says it is thawed.
    """
    beat = g.last_fs_beat()
    polling.wait_until(lambda: g.last_fs_beat() > beat + 5, 30, 0.2,
                       'the guest filesystem is frozen: no beat after %d'
                       % beat)
    if ask_agent:
        assert g.agent_command('guest-fsfreeze-status') == 'thawed'


#: libvirtd's status file of a running domain (its agent timeout too).
STATUS = '/run/libvirt/qemu/%s.xml'


def assert_agent_timeout_default(g):
    """The domain's agent timeout is libvirt's default again (block)."""
    status = STATUS % g.name
    if os.path.exists(status):
        with open(status) as f:
            assert '<agentTimeout>-2</agentTimeout>' in f.read()


def bounded(fn, bound):
    """``fn()``'s result (or exception), failing the test when it takes
    longer than ``bound`` seconds (the thread is then left behind).
    """
    out = {}

    def run():
        try:
            out['result'] = fn()
        except BaseException as e:  # noqa: B902
            out['error'] = e

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), 'the snapshot hung (%.0f s)' % elapsed
    if 'error' in out:
        raise out['error']
    return out['result'], elapsed


# -- an agent that freezes ---------------------------------------------
@pytest.mark.parametrize('style', ['backup', 'blockcopy', 'rebase'])
def test_live_snapshot_is_quiesced(conf, agent_guest, style):
    g = agent_guest
    conf.set_override('live_copy_style', style, group='snapshot_libvirt')
    assert g.agent_command('guest-fsfreeze-status') == 'thawed'
    before = GuestBefore(g)
    result = take(conf, g, method='live', quiesce='required')
    assert result.method == 'live'
    assert result.quiesced
    assert result.downtime == 0
    assert_good_image(result, g, conf)
    assert_guest_as_before(g, before)
    assert_not_frozen(g)
    assert_agent_timeout_default(g)


def test_rbd_direct_snapshot_is_quiesced(rconf, drv, ceph_glance,  # noqa
                                         rbd_agent_guest, workdir):
    g = rbd_agent_guest
    before = GuestBefore(g)
    result = take(rconf, g, store='glance+' + ceph_glance,
                  quiesce='required')
    assert result.method == 'direct', result.reason
    assert result.quiesced
    image_id = result.image_id
    try:
        image = glance_stack.client(ceph_glance).images.get(image_id)
        assert image['status'] == 'active'
        assert image['snapshot_quiesced'] == 'true'
        assert drv.info(IMAGES, image_id)['parent'] is None
        assert_guest_as_before(g, before)
        assert_not_frozen(g)
        assert_agent_timeout_default(g)
        exported = ceph_stack.export(ceph_stack.ceph_conf(),
                                     '%s/%s@snap' % (IMAGES, image_id),
                                     os.path.join(workdir, 'export.raw'))
        assert_one_point_in_time(exported, g)
    finally:
        glance_stack.delete(ceph_glance, image_id)


def agent_timeout(g):
    """The domain's agent timeout as libvirtd's status file says."""
    with open(STATUS % g.name) as f:
        text = f.read()
    start = text.index('<agentTimeout>') + len('<agentTimeout>')
    return int(text[start:text.index('</agentTimeout>')])


def test_sigkill_while_frozen_then_recover(workdir, agent_guest):
    """Killed while the guest is frozen: ``recover`` thaws it and sets the
    agent timeout the freeze set back to libvirt's default (issue 22).
    """
    g = agent_guest
    run = test_recover.Run(workdir, 'backup', ['--method', 'live',
                                               '--quiesce', 'required'],
                           'freeze', g, 'file')
    try:
        assert run.made('freeze') == [{'agent_timeout': 30}]
        assert agent_timeout(g) == 30
    finally:
        run.proc.kill()
        run.proc.communicate()
    out = run.recover()
    assert 'FAILED' not in out
    assert 'thaw filesystems' in out, out
    assert 'reset agent timeout' in out, out
    assert agent_timeout(g) == -2
    assert_not_frozen(g)
    assert journal.paths(os.path.join(run.state, 'snapshots')) == []


# -- an agent that hangs -----------------------------------------------
def test_hanging_agent_with_quiesce_auto_goes_on_unquiesced(
        conf, hang_guest):
    g = hang_guest
    conf.set_override('quiesce_timeout', HANG_TIMEOUT, group='snapshot')
    before = GuestBefore(g)
    result, elapsed = bounded(
        lambda: take(conf, g, method='live', quiesce='auto'), HANG_BOUND)
    assert result.method == 'live'
    assert not result.quiesced
    assert elapsed >= HANG_TIMEOUT
    assert_good_image(result, g, conf)
    assert_guest_as_before(g, before)
    # The agent is stuck in its hook: it cannot say; the writer can.
    assert_not_frozen(g, ask_agent=False)
    assert_agent_timeout_default(g)


def test_hanging_agent_with_quiesce_required_fails(conf, hang_guest):
    g = hang_guest
    conf.set_override('quiesce_timeout', HANG_TIMEOUT, group='snapshot')
    before = GuestBefore(g)
    with pytest.raises(exception.QuiesceFailed):
        bounded(lambda: take(conf, g, method='live', quiesce='required'),
                HANG_BOUND)
    assert_guest_as_before(g, before)
    assert_nothing_left(conf)
    assert_not_frozen(g, ask_agent=False)
    assert_agent_timeout_default(g)
