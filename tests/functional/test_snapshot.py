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

"""Live and cold snapshots of a real, running, counter-writing guest."""

import hashlib
import json
import os
import signal
import subprocess
import sys

import libvirt
import pytest
from stevedore import extension

from nova_snapshot_ext.backends import base as backend_base
from nova_snapshot_ext import exception
from nova_snapshot_ext import snapshot
from nova_snapshot_ext.stores import base as store_base
from tests.functional import guest as guest_mod
from tests import vendor_plugins


class GuestBefore:
    """What a user would compare after a snapshot."""

    def __init__(self, g: guest_mod.TestGuest) -> None:
        self.state = g.state()
        self.persistent = g.dom.isPersistent()
        self.xml = g.inactive_xml()
        self.boots = g.boots()
        self.counter = g.last_counter()


def store_url(conf) -> str:
    return 'file://' + os.path.join(conf.state_path, 'images')


def take(conf, g, progress=None, **kwargs):
    """Snapshot ``g``; ``store`` may be a spec or an ImageStore."""
    kwargs.setdefault('store', store_url(conf))
    kwargs.setdefault('name', 'snap')
    store = kwargs.pop('store')
    if isinstance(store, str):
        kwargs['store'] = store
        store = None
    backends = kwargs.pop('backends', None)
    request = snapshot.SnapshotRequest(guest=g.name, **kwargs)
    return snapshot.take_snapshot(request, conf=conf, store=store,
                                  progress=progress or (lambda s, f: None),
                                  backends=backends)


def assert_guest_as_before(g, before, running_expected=True):
    assert g.dom.isPersistent() == before.persistent
    assert g.inactive_xml() == before.xml
    assert g.state() == before.state
    if g.dom.isActive():
        assert not g.dom.blockJobInfo('vda', 0)
        assert_no_backup_job(g)
    assert not g.dom.hasManagedSaveImage(0)
    assert g.boots() == before.boots, 'the guest was rebooted'
    if running_expected:
        g.wait_counter(max(before.counter, g.last_counter()) + 1)


def assert_no_backup_job(g):
    with pytest.raises(libvirt.libvirtError, match='no domain backup job'):
        g.dom.backupGetXMLDesc(0)


def assert_no_temp_files(conf):
    tmp = conf.snapshot.temp_directory
    assert not os.path.isdir(tmp) or os.listdir(tmp) == []


def assert_nothing_left(conf):
    assert_no_temp_files(conf)
    images = os.path.join(conf.state_path, 'images')
    if os.path.isdir(images):
        assert os.listdir(images) == []


def assert_good_image(result, g, conf, fmt='qcow2'):
    assert result.format == fmt
    path = result.image
    assert os.path.isfile(path)
    info = guest_mod.image_info(path, fmt)
    assert 'backing-filename' not in info, 'the image is not standalone'
    assert info['virtual-size'] == g.disks.size
    check = guest_mod.check_image(path, fmt, g.disks.size)
    assert check.data_sha256 == g.disks.data_sha256
    assert check.point_in_time, check.counters
    assert check.last > 0
    with open(os.path.join(os.path.dirname(path), 'metadata.json')) as f:
        meta = json.load(f)
    assert meta['method'] == result.method
    assert meta['reason'] == result.reason
    assert meta['source_domain'] == g.name
    assert meta['sha256'] == result.sha256
    with open(path, 'rb') as f:
        assert hashlib.file_digest(f, 'sha256').hexdigest() == result.sha256
    assert meta['size'] == os.path.getsize(path) == result.size
    assert meta['virtual_size'] == g.disks.size
    assert meta['format'] == fmt
    assert meta['name'] == 'snap'
    assert_no_temp_files(conf)
    return check


@pytest.mark.parametrize('style', ['backup', 'blockcopy', 'rebase'])
def test_live_qcow2(conf, qcow2_guest, style):
    conf.set_override('live_copy_style', style, group='snapshot_libvirt')
    before = GuestBefore(qcow2_guest)
    result = take(conf, qcow2_guest, method='live')
    assert result.method == 'live'
    assert result.live_copy_style == style
    assert result.live_copy_reason == \
        '[snapshot_libvirt] live_copy_style = %s' % style
    assert result.downtime == 0
    assert not result.quiesced  # the channel exists, no agent answers
    assert_good_image(result, qcow2_guest, conf)
    with open(os.path.join(os.path.dirname(result.image),
                           'metadata.json')) as f:
        assert json.load(f)['live_copy_reason'] == result.live_copy_reason
    assert_guest_as_before(qcow2_guest, before)


def test_guest_first_keeps_the_image_whole(conf, qcow2_guest):
    """With the read paced by the guest's writes, the image is still the
    whole disk at one point in time, hashed as written.
    """
    conf.set_override('live_copy_style', 'backup', group='snapshot_libvirt')
    conf.set_override('live_copy_guest_share', 0.8,
                      group='snapshot_libvirt')
    before = GuestBefore(qcow2_guest)
    result = take(conf, qcow2_guest, method='live')
    assert (result.method, result.live_copy_style) == ('live', 'backup')
    assert result.downtime == 0
    assert_good_image(result, qcow2_guest, conf)
    assert_guest_as_before(qcow2_guest, before)


@pytest.mark.parametrize('style,fmt', [('backup', 'raw'),
                                       ('backup', 'qcow2'),
                                       ('blockcopy', 'raw'),
                                       ('rebase', 'qcow2')])
def test_live_raw(conf, raw_guest, style, fmt):
    conf.set_override('live_copy_style', style, group='snapshot_libvirt')
    before = GuestBefore(raw_guest)
    result = take(conf, raw_guest, image_format=fmt)
    assert result.method == 'live'
    assert result.live_copy_style == style
    assert_good_image(result, raw_guest, conf, fmt=fmt)
    assert_guest_as_before(raw_guest, before)


def test_live_compressed_qcow2_is_smaller_and_equal(conf, qcow2_guest):
    conf.set_override('compress', True, group='snapshot')
    result = take(conf, qcow2_guest)
    check = assert_good_image(result, qcow2_guest, conf)
    assert check.point_in_time


def test_cold_running(conf, qcow2_guest):
    before = GuestBefore(qcow2_guest)
    result = take(conf, qcow2_guest, method='cold')
    assert result.method == 'cold'
    assert result.downtime > 0
    assert_good_image(result, qcow2_guest, conf)
    # Restored from its saved memory, not rebooted: same boot count and
    # the counter goes on.
    assert_guest_as_before(qcow2_guest, before)


def test_cold_paused_stays_paused(conf, qcow2_guest):
    qcow2_guest.dom.suspend()
    try:
        before = GuestBefore(qcow2_guest)
        result = take(conf, qcow2_guest, method='cold')
        assert qcow2_guest.state() == libvirt.VIR_DOMAIN_PAUSED
        assert_good_image(result, qcow2_guest, conf)
        assert_guest_as_before(qcow2_guest, before, running_expected=False)
    finally:
        qcow2_guest.dom.resume()
    qcow2_guest.wait_counter(before.counter + 1)


def test_live_paused_stays_paused(conf, raw_guest):
    raw_guest.dom.suspend()
    try:
        before = GuestBefore(raw_guest)
        result = take(conf, raw_guest)
        assert result.method == 'live'
        assert_good_image(result, raw_guest, conf, fmt='raw')
        assert_guest_as_before(raw_guest, before, running_expected=False)
    finally:
        raw_guest.dom.resume()


def test_shut_off_guest_auto_is_cold_and_starts_nothing(conf, fresh_guest):
    fresh_guest.dom.destroy()
    before = GuestBefore(fresh_guest)
    result = take(conf, fresh_guest)
    assert result.method == 'cold'
    assert 'shutoff' in result.reason
    assert result.downtime == 0
    assert_good_image(result, fresh_guest, conf)
    assert fresh_guest.state() == libvirt.VIR_DOMAIN_SHUTOFF
    assert_guest_as_before(fresh_guest, before, running_expected=False)


def test_forced_live_on_shut_off_guest_fails(conf, shutoff_guest):
    assert_refused(conf, shutoff_guest, exception.LiveSnapshotImpossible,
                   'the guest is shutoff', method='live')


def assert_refused(conf, g, error, match, **kwargs):
    """The snapshot fails with ``error`` and changes nothing at all."""
    before = GuestBefore(g)
    with pytest.raises(error, match=match):
        take(conf, g, **kwargs)
    assert_guest_as_before(g, before,
                           running_expected=before.state ==
                           libvirt.VIR_DOMAIN_RUNNING)
    assert_nothing_left(conf)


def test_forced_live_with_live_disabled_fails(conf, qcow2_guest):
    conf.set_override('disable_live_snapshot', True,
                      group='snapshot_workarounds')
    assert_refused(conf, qcow2_guest, exception.LiveSnapshotImpossible,
                   'disable_live_snapshot', method='live')
    # auto falls back to cold, and says why
    result = take(conf, qcow2_guest)
    assert result.method == 'cold'
    assert 'disable_live_snapshot' in result.reason


def test_forced_live_with_too_old_qemu_fails(conf, qcow2_guest):
    conf.set_override('min_qemu_version', '99.0', group='snapshot_libvirt')
    assert_refused(conf, qcow2_guest, exception.LiveSnapshotImpossible,
                   'older than the minimum 99.0', method='live')


def test_quiesce_required_without_agent_leaves_guest_untouched(
        conf, qcow2_guest):
    assert_refused(conf, qcow2_guest, exception.QuiesceFailed,
                   'no QEMU guest agent is connected', quiesce='required')


def test_unknown_guest(conf, conn):
    with pytest.raises(exception.GuestNotFound, match='nse-no-such'):
        take(conf, _Named('nse-no-such-guest'))
    assert_nothing_left(conf)


class _Named:
    """What take() needs of a guest: its name."""

    def __init__(self, name):
        self.name = name


HOLD_LOCK = '''
import sys
from oslo_concurrency import lockutils
with lockutils.lock(sys.argv[1], external=True, lock_path=sys.argv[2]):
    print('held', flush=True)
    sys.stdin.read()
'''


def test_one_snapshot_per_guest(conf, qcow2_guest):
    # Another process (another CLI run, or nova-compute) snapshots the
    # same guest: it holds the guest's lock.
    lock_path = conf.snapshot.lock_path
    os.makedirs(lock_path, exist_ok=True)
    other = subprocess.Popen(
        [sys.executable, '-c', HOLD_LOCK,
         'snapshot-%s' % qcow2_guest.dom.UUIDString(), lock_path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline() == 'held\n'
        before = GuestBefore(qcow2_guest)
        with pytest.raises(exception.SnapshotInProgress):
            take(conf, qcow2_guest)
        assert_guest_as_before(qcow2_guest, before)
        assert_nothing_left(conf)
    finally:
        other.communicate('')
    # Once the other one is done, a snapshot goes through.
    assert take(conf, qcow2_guest).method == 'live'


# -- faults --------------------------------------------------------------
def _kill_qemu_img(stage, fraction, fired=[]):
    """Progress callback that SIGKILLs our qemu-img convert once."""
    if stage != 'convert' or fired:
        return
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                cmd = f.read().split(b'\0')
            with open('/proc/%s/stat' % pid) as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except OSError:
            continue
        # NOTE: qemu-img runs under prlimit's wrapper, which execs it by
        # its full path.
        if (len(cmd) > 1 and os.path.basename(cmd[0]) == b'qemu-img'
                and cmd[1] == b'convert' and ppid == os.getpid()):
            os.kill(int(pid), signal.SIGKILL)
            fired.append(pid)


@pytest.mark.parametrize('method', ['live', 'cold'])
def test_conversion_killed(conf, qcow2_guest, method):
    before = GuestBefore(qcow2_guest)
    fired = []
    # NOTE: a raw image into a directory is written by qemu-img convert,
    # live or cold (a live qcow2 one is written by our own writer).
    with pytest.raises(exception.ConversionFailed, match='killed|signal'):
        take(conf, qcow2_guest, method=method, image_format='raw',
             progress=lambda s, f: _kill_qemu_img(s, f, fired))
    assert fired, 'qemu-img was not running'
    assert_guest_as_before(qcow2_guest, before)
    assert_nothing_left(conf)


@pytest.fixture
def tmpfs(workdir):
    mounts = []

    def mount(name, size='1m', readonly=False):
        path = os.path.join(workdir, name)
        os.makedirs(path)
        opts = 'size=%s,mode=0755' % size
        subprocess.run(['mount', '-t', 'tmpfs', '-o', opts, 'tmpfs', path],
                       check=True)
        mounts.append(path)
        if readonly:
            subprocess.run(['mount', '-o', 'remount,ro', path], check=True)
        return path

    yield mount
    for path in reversed(mounts):
        subprocess.run(['umount', path], check=True)


def test_store_not_writable(conf, qcow2_guest, tmpfs):
    store = tmpfs('ro-store', readonly=True)
    before = GuestBefore(qcow2_guest)
    with pytest.raises(exception.StoreUnavailable, match='not writable'):
        take(conf, qcow2_guest, store='file://' + store)
    assert_guest_as_before(qcow2_guest, before)
    assert os.listdir(store) == []
    assert_nothing_left(conf)


@pytest.mark.parametrize('method', ['live', 'cold'])
def test_store_full(conf, qcow2_guest, tmpfs, method):
    # Refused up front, before the guest is touched.
    store = tmpfs('full-store', size='2m')
    before = GuestBefore(qcow2_guest)
    with pytest.raises(exception.InsufficientSpace,
                       match='Not enough free space in %s/.*partial for the '
                             'snapshot of %s: it needs about .* MiB, .* are '
                             'free. .* set the image store' % (
                                 store, qcow2_guest.name)):
        take(conf, qcow2_guest, store='file://' + store, method=method)
    assert_guest_as_before(qcow2_guest, before)
    assert os.listdir(store) == []
    assert_nothing_left(conf)


def test_temp_directory_too_small_for_the_delta(conf, qcow2_guest, tmpfs):
    # A mirror needs room for the delta; a backup job reserves none.
    conf.set_override('live_copy_style', 'blockcopy',
                      group='snapshot_libvirt')
    conf.set_override('temp_directory', tmpfs('small-tmp', size='8m'),
                      group='snapshot')
    before = GuestBefore(qcow2_guest)
    with pytest.raises(exception.InsufficientSpace,
                       match=r'Not enough free space in .*small-tmp .*set '
                             r'\[snapshot\] temp_directory'):
        take(conf, qcow2_guest, method='live')
    assert_guest_as_before(qcow2_guest, before)
    assert_nothing_left(conf)


def test_encrypted_disk_is_refused(conf, conn, workdir):
    # Defined only: the refusal comes before anything reads the disk.
    name = guest_mod.PREFIX + 'luks-%s' % os.urandom(3).hex()
    disks = guest_mod.Disks(path=os.path.join(workdir, 'luks.qcow2'),
                            format='qcow2', size=0, data_sha256='')
    xml = guest_mod.domain_xml(name, disks, os.path.join(workdir, 's.log'))
    xml = xml.replace(
        '<target dev="vda"', '<encryption format="luks"><secret '
        'type="passphrase" uuid="6e3b0f5a-3c1d-4f7e-9a2b-1c0d9e8f7a6b" />'
        '</encryption><target dev="vda"')
    dom = conn.defineXML(xml)
    try:
        with pytest.raises(exception.UnsupportedDisk,
                           match='its disk vda is encrypted .luks.'):
            take(conf, _Named(name))
        assert not dom.isActive()
        assert_nothing_left(conf)
    finally:
        dom.undefine()


@pytest.mark.parametrize('style', ['backup', 'blockcopy', 'rebase'])
def test_guest_destroyed_mid_copy(conf, fresh_guest, style):
    conf.set_override('live_copy_style', style, group='snapshot_libvirt')
    conf.set_override('live_copy_bandwidth', 1, group='snapshot_libvirt')
    xml = fresh_guest.inactive_xml()
    disk_info = guest_mod.image_info(fresh_guest.disks.path, 'qcow2',
                                     force_share=True)

    def destroy(stage, fraction):
        if not fresh_guest.dom.isActive():
            return
        if style == 'backup':
            # NOTE: the export is read by qemu-img; the first progress
            # of the convert means the job runs.
            if stage == 'convert':
                fresh_guest.dom.destroy()
        elif stage == 'copy' and fresh_guest.dom.blockJobInfo('vda', 0):
            fresh_guest.dom.destroy()

    with pytest.raises(exception.GuestGone):
        take(conf, fresh_guest, method='live', progress=destroy)
    # The domain is still defined, with its own XML, on its own disk.
    assert fresh_guest.dom.isPersistent()
    assert fresh_guest.inactive_xml() == xml
    assert fresh_guest.state() == libvirt.VIR_DOMAIN_SHUTOFF
    after = guest_mod.image_info(fresh_guest.disks.path, 'qcow2')
    assert after.get('backing-filename') == disk_info.get('backing-filename')
    guest_mod.run('qemu-img', 'check', '-q', '-f', 'qcow2',
                  fresh_guest.disks.path)
    assert_nothing_left(conf)
    # and it boots again
    fresh_guest.start()


def _vault(conf, workdir, name):
    """A new directory ``name`` and the vendor's store in it."""
    vault = os.path.join(workdir, name)
    os.makedirs(vault)
    return vault, store_base.load(conf, 'vault://' + vault,
                                  manager=vendor_plugins.store_manager())


def test_third_party_backend_and_store_through_the_loaders(
        conf, qcow2_guest, workdir):
    # A plugin author's backend (cold copies only) and store, written
    # against the public interface and loaded by the project's loaders
    # from stevedore test managers, snapshot a real running guest.
    vault, store = _vault(conf, workdir, 'vault')
    before = GuestBefore(qcow2_guest)
    request = snapshot.SnapshotRequest(guest=qcow2_guest.name, name='snap',
                                       backend='vendor', image_format='raw')
    with backend_base.Backends(
            conf, manager=vendor_plugins.backend_manager()) as backends:
        result = snapshot.take_snapshot(request, conf=conf, store=store,
                                        backends=backends)
    assert (result.backend, result.method) == ('vendor', 'cold')
    assert 'the vendor backend cannot copy a running disk' in result.reason
    assert result.downtime > 0
    assert_guest_as_before(qcow2_guest, before)
    assert os.listdir(vault) == [result.image_id]
    with open(os.path.join(vault, result.image_id, 'meta.json')) as f:
        assert json.load(f)['properties']['method'] == 'cold'
    check = guest_mod.check_image(os.path.join(result.location, 'data'),
                                  'raw', qcow2_guest.disks.size)
    assert check.data_sha256 == qcow2_guest.disks.data_sha256
    assert check.point_in_time, check.counters
    assert_no_temp_files(conf)


def test_third_party_plugins_without_a_capability_are_refused_in_one_line(
        conf, qcow2_guest, workdir):
    # --all-disks and --incremental are composed from what backends and
    # stores say they can do: a plugin that does not say it is refused,
    # naming the capability, before the guest is touched.
    vault, store = _vault(conf, workdir, 'vault-modes')
    before = GuestBefore(qcow2_guest)
    # NOTE: the vendor's backend installed in place of ours for qcow2.
    replaced = extension.ExtensionManager.make_test_instance(
        [extension.Extension('qcow2', None, vendor_plugins.VendorBackend,
                             None)])
    cases = [
        (dict(all_disks=True), replaced, None, exception.UnsupportedDisk,
         'backends with capability "group", and vda is a qcow2 disk, whose '
         'backend lacks it'),
        (dict(incremental=True, backend='qcow2'), replaced, None,
         exception.InvalidInput, 'the vendor backend of disk vda lacks '
         'that capability ("changed-blocks")'),
        (dict(incremental=True), None, store, exception.InvalidInput,
         'need a store that holds chains of images, such as the directory '
         'store (file://), and vault://'),
    ]
    for extra, manager, into, error, line in cases:
        request = snapshot.SnapshotRequest(guest=qcow2_guest.name,
                                           name='snap', **extra)
        with backend_base.Backends(conf, manager=manager) as backends:
            with pytest.raises(error) as e:
                snapshot.take_snapshot(request, conf=conf, backends=backends,
                                       store=into or store_base.load(conf))
        assert line in str(e.value)
        assert '\n' not in str(e.value)
    assert_guest_as_before(qcow2_guest, before)
    assert os.listdir(vault) == []
    assert_no_temp_files(conf)
    assert_nothing_left(conf)


def test_third_party_store_takes_a_live_qcow2_hashed_as_written(
        conf, qcow2_guest, workdir):
    # The store knows commit(progress) only: the hash our writer made of
    # the file does not reach it, and the image is whole.
    conf.set_override('live_copy_style', 'backup', group='snapshot_libvirt')
    _, store = _vault(conf, workdir, 'vault-live')
    before = GuestBefore(qcow2_guest)
    request = snapshot.SnapshotRequest(guest=qcow2_guest.name, name='snap',
                                       method='live', image_format='qcow2')
    result = snapshot.take_snapshot(request, conf=conf, store=store)
    assert (result.method, result.live_copy_style) == ('live', 'backup')
    assert result.sha256 is None
    check = guest_mod.check_image(os.path.join(result.location, 'data'),
                                  'qcow2', qcow2_guest.disks.size)
    assert check.data_sha256 == qcow2_guest.disks.data_sha256
    assert check.point_in_time, check.counters
    assert_guest_as_before(qcow2_guest, before)
    assert_no_temp_files(conf)
