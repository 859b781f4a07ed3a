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

"""A guest's calls across a restart of libvirtd, against a fake libvirtd
whose domains outlive its connections.

A call can lose its connection before libvirtd did anything (``before``)
or after (``after``: the reply was lost); each call is repeated after the
reconnect only when that is right.
"""

import libvirt
import pytest

from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import domain
from nova_snapshot_ext.libvirt import guest as guest_mod
from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext import retry

UUID = '11111111-2222-3333-4444-555555555555'


def lv_error(code, message, origin=libvirt.VIR_FROM_RPC):
    e = libvirt.libvirtError(message)
    e.err = (code, origin, message, 2, None, None, None, 0, 0)
    return e


def lost():
    return lv_error(libvirt.VIR_ERR_INTERNAL_ERROR,
                    'internal error: client socket is closed')


class State:
    """What QEMU and the domain's files hold: it outlives libvirtd."""

    def __init__(self):
        self.active = True
        self.persistent = True
        self.save = False
        self.job = {}
        self.frozen = False


class Daemon:
    """A fake libvirtd: a restart kills every open connection."""

    def __init__(self):
        self.epoch = 0
        self.up = True
        self.state = State()
        self.calls = []
        #: method name -> 'before' or 'after': the next call of it loses
        #: its connection then (the daemon restarts).
        self.fault = {}

    def restart(self):
        self.epoch += 1

    def open(self, uri):
        if not self.up:
            raise lv_error(libvirt.VIR_ERR_SYSTEM_ERROR,
                           'Failed to connect socket')
        return Conn(self)


class Conn:
    def __init__(self, daemon):
        self.daemon = daemon
        self.epoch = daemon.epoch
        self.alive = True

    def check(self):
        if self.epoch != self.daemon.epoch:
            self.alive = False
            raise lost()

    def isAlive(self):
        return int(self.alive)

    def close(self):
        pass

    def lookupByName(self, name):
        self.check()
        if name != 'g':
            raise lv_error(libvirt.VIR_ERR_NO_DOMAIN, 'no domain',
                           libvirt.VIR_FROM_QEMU)
        return Dom(self)

    def lookupByUUIDString(self, uuid):
        self.check()
        if uuid != UUID:
            raise lv_error(libvirt.VIR_ERR_NO_DOMAIN, 'no domain',
                           libvirt.VIR_FROM_QEMU)
        return Dom(self)

    def defineXML(self, xml):
        return Dom(self).run('defineXML',
                             lambda s: setattr(s, 'persistent', True))


class Dom:
    def __init__(self, conn):
        self.conn = conn
        self.s = conn.daemon.state

    def name(self):
        return 'g'

    def UUIDString(self):
        return UUID

    def run(self, method, effect=lambda s: None):
        self.conn.check()
        daemon = self.conn.daemon
        daemon.calls.append(method)
        when = daemon.fault.pop(method, None)
        if when == 'before':
            daemon.restart()
            self.conn.check()
        result = effect(self.s)
        if when == 'after':
            daemon.restart()
            self.conn.check()
        return result

    def state(self):
        return self.run('state', lambda s: [
            libvirt.VIR_DOMAIN_RUNNING if s.active
            else libvirt.VIR_DOMAIN_SHUTOFF, 1])

    def isActive(self):
        return self.run('isActive', lambda s: int(s.active))

    def isPersistent(self):
        return self.run('isPersistent', lambda s: int(s.persistent))

    def XMLDesc(self, flags):
        def xml(s):
            mirror = ("<mirror ready='yes'><source file='%s'/></mirror>" %
                      s.job['dest'] if s.job else '')
            return ("<domain><devices><disk type='file'><driver type='qcow2'"
                    "/><source file='/d'/><target dev='vda'/>%s</disk>"
                    "</devices></domain>" % mirror)
        return self.run('XMLDesc', xml)

    def blockJobInfo(self, dev, flags):
        return self.run('blockJobInfo', lambda s: (
            {'type': 2, 'cur': 5, 'end': 5} if s.job else {}))

    def blockCopy(self, dev, xml, params, flags):
        dest = xml.split("file=\"")[1].split('"')[0]
        return self.run('blockCopy', lambda s: s.job.update(dest=dest))

    def blockJobAbort(self, dev, flags):
        return self.run('blockJobAbort', lambda s: s.job.clear())

    def managedSave(self, flags):
        def save(s):
            s.active, s.save = False, True
        return self.run('managedSave', save)

    def hasManagedSaveImage(self, flags):
        return self.run('hasManagedSaveImage', lambda s: int(s.save))

    def managedSaveRemove(self, flags):
        return self.run('managedSaveRemove',
                        lambda s: setattr(s, 'save', False))

    def jobStats(self, flags):
        return self.run('jobStats',
                        lambda s: {'type': libvirt.VIR_DOMAIN_JOB_NONE})

    def create(self):
        def start(s):
            s.active, s.save = True, False
        return self.run('create', start)

    def undefineFlags(self, flags):
        return self.run('undefineFlags',
                        lambda s: setattr(s, 'persistent', False))

    def fsFreeze(self, mounts, flags):
        return self.run('fsFreeze', lambda s: setattr(s, 'frozen', True))

    def fsThaw(self, mounts, flags):
        return self.run('fsThaw', lambda s: setattr(s, 'frozen', False))


@pytest.fixture
def daemon(monkeypatch):
    d = Daemon()
    monkeypatch.setattr(libvirt, 'open', d.open)
    monkeypatch.setattr(retry, 'sleep', lambda seconds: None)
    return d


@pytest.fixture
def host(daemon):
    return host_mod.Host('qemu:///system', reconnect_timeout=0.05)


@pytest.fixture
def guest(host):
    return host.get_guest('g')


@pytest.mark.parametrize('code,origin,expected', [
    (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_RPC, True),
    (libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_RPC, True),
    (libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_REMOTE, True),
    (libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_FROM_NONE, True),
    (libvirt.VIR_ERR_INVALID_CONN, libvirt.VIR_FROM_NONE, True),
    (libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_QEMU, False),
    (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_QEMU, False),
    (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_FROM_QEMU, False),
])
def test_connection_lost(code, origin, expected):
    assert domain.connection_lost(lv_error(code, 'm', origin)) is expected


def test_reads_are_made_again_on_a_new_connection(daemon, host, guest):
    old = guest.dom
    daemon.restart()
    assert guest.power_state() == guest_mod.RUNNING
    assert guest.dom is not old and host.generation == 1
    assert guest.xml().startswith('<domain>')
    assert host.generation == 1


def test_two_guests_one_reconnect(daemon, host):
    first, second = host.get_guest('g'), host.get_guest('g')
    daemon.restart()
    first.is_persistent()
    second.is_persistent()
    assert host.generation == 1


def test_lookup_on_a_stale_connection(daemon, host):
    host.get_guest('g')
    daemon.restart()
    assert host.get_guest('g').name == 'g'
    assert host.generation == 1
    with pytest.raises(exception.GuestNotFound):
        host.get_guest('other')


@pytest.mark.parametrize('when,calls', [('before', 2), ('after', 1)])
def test_block_copy_started_once(daemon, guest, when, calls):
    daemon.fault['blockCopy'] = when
    guest.start_copy('vda', '/tmp/delta', 'qcow2', transient_job=True)
    assert daemon.state.job == {'dest': '/tmp/delta'}
    assert daemon.calls.count('blockCopy') == calls


def test_block_copy_of_someone_else_is_refused(daemon, guest):
    daemon.fault['blockCopy'] = 'before'
    daemon.state.job['dest'] = '/other'
    with pytest.raises(exception.BlockJobActive):
        guest.start_copy('vda', '/tmp/delta', 'qcow2', transient_job=True)
    assert daemon.calls.count('blockCopy') == 1


@pytest.mark.parametrize('when,calls', [('before', 2), ('after', 1)])
def test_abort_made_while_the_job_is_there(daemon, guest, when, calls):
    daemon.state.job['dest'] = '/tmp/delta'
    daemon.fault['blockJobAbort'] = when
    guest.abort_copy('vda')
    assert daemon.state.job == {}
    assert daemon.calls.count('blockJobAbort') == calls


def test_copy_polling_goes_on_after_a_restart(daemon, guest):
    daemon.state.job['dest'] = '/tmp/delta'
    daemon.restart()
    assert guest.copy_ready('vda') == (True, 1.0)


@pytest.mark.parametrize('when,calls', [('before', 2), ('after', 1)])
def test_managed_save_once(daemon, guest, when, calls):
    daemon.fault['managedSave'] = when
    guest.managed_save(paused=False)
    assert (daemon.state.active, daemon.state.save) == (False, True)
    assert daemon.calls.count('managedSave') == calls


def test_partial_save_is_removed_before_saving_again(daemon, guest):
    # libvirtd cancelled the interrupted save, the guest runs on, and a
    # save file is there.
    daemon.fault['managedSave'] = 'before'
    daemon.state.save = True
    guest.managed_save(paused=False)
    assert daemon.calls.count('managedSaveRemove') == 1
    assert daemon.calls.count('managedSave') == 2
    assert (daemon.state.active, daemon.state.save) == (False, True)


@pytest.mark.parametrize('when,calls', [('before', 2), ('after', 1)])
def test_restore_once(daemon, guest, when, calls):
    daemon.state.active, daemon.state.save = False, True
    daemon.fault['create'] = when
    guest.restore()
    assert daemon.state.active and not daemon.state.save
    assert daemon.calls.count('create') == calls


@pytest.mark.parametrize('when,calls', [('before', 2), ('after', 1)])
def test_undefine_once(daemon, guest, when, calls):
    daemon.fault['undefineFlags'] = when
    guest.undefine_keep_running()
    assert not daemon.state.persistent
    assert daemon.calls.count('undefineFlags') == calls


def test_define_again(daemon, guest):
    daemon.state.persistent = False
    daemon.fault['defineXML'] = 'after'
    guest.define('<domain/>')
    assert daemon.state.persistent


def test_freeze_is_not_made_again(daemon, guest):
    daemon.fault['fsFreeze'] = 'after'
    with pytest.raises(exception.QuiesceFailed) as e:
        guest.freeze()
    assert 'connection to libvirtd was lost' in str(e.value)
    assert daemon.calls.count('fsFreeze') == 1
    daemon.fault['fsThaw'] = 'before'
    guest.thaw()
    assert not daemon.state.frozen


def test_libvirtd_does_not_come_back(daemon, host, guest):
    daemon.restart()
    daemon.up = False
    with pytest.raises(exception.HypervisorUnavailable) as e:
        guest.block_job('vda')
    assert 'did not answer again within' in str(e.value)
    assert '\n' not in str(e.value)
    # Once it is back, the same guest works again.
    daemon.up = True
    assert guest.block_job('vda') is None


def test_after_giving_up_the_next_reconnect_does_not_wait(daemon, host,
                                                          guest,
                                                          monkeypatch):
    host.reconnect_timeout = 3600
    clock = [0.0]
    monkeypatch.setattr(host_mod.time, 'monotonic', lambda: clock[0])

    def sleep(seconds):
        clock[0] += seconds

    monkeypatch.setattr(retry, 'sleep', sleep)
    daemon.restart()
    daemon.up = False
    with pytest.raises(exception.HypervisorUnavailable):
        guest.block_job('vda')
    assert clock[0] >= 3600
    waited = clock[0]
    # The undo that follows tries once.
    with pytest.raises(exception.HypervisorUnavailable):
        guest.abort_copy('vda')
    assert clock[0] == waited


def test_without_a_host_a_lost_connection_is_an_error(daemon):
    g = guest_mod.Guest(Dom(Conn(daemon)))
    daemon.restart()
    with pytest.raises(exception.LibvirtFailed):
        g.power_state()
