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

"""Snapshots into a real Glance (Glance 33 under uWSGI, no Keystone)."""

import hashlib
import io
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import uuid

import pytest

from nova_snapshot_ext import exception
from nova_snapshot_ext.stores import base
from nova_snapshot_ext.stores import glance as glance_store
from tests.functional import glance_stack
from tests.functional import guest as guest_mod
from tests.functional.test_snapshot import assert_guest_as_before
from tests.functional.test_snapshot import assert_no_temp_files
from tests.functional.test_snapshot import GuestBefore
from tests.functional.test_snapshot import take


def sha(path, algo):
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, algo).hexdigest()


def assert_good_glance_image(url, result, g, workdir, fmt, headers=None):
    """The image is active in Glance, with the snapshot's properties, and
    its bytes are one point in time of the guest's disk.
    """
    image = glance_stack.client(url, headers).images.get(result.image)
    assert result.image == result.image_id == image['id']
    assert image['status'] == 'active'
    assert image['disk_format'] == fmt == result.format
    assert image['container_format'] == 'bare'
    assert image['visibility'] == 'private'
    assert image['image_type'] == 'snapshot'
    assert image['instance_uuid'] == g.dom.UUIDString()
    assert image['source_domain'] == g.name
    assert image['snapshot_method'] == result.method
    assert image['snapshot_reason'] == result.reason[:255]
    assert image['size'] == result.size
    assert image['virtual_size'] == g.disks.size == result.virtual_size
    assert result.location.endswith('/v2/images/%s' % image['id'])
    path = os.path.join(workdir, 'download.%s' % fmt)
    glance_stack.download(url, image['id'], path, headers)
    assert os.path.getsize(path) == result.size
    assert sha(path, 'sha256') == result.sha256
    assert sha(path, image['os_hash_algo']) == image['os_hash_value']
    assert 'backing-filename' not in guest_mod.image_info(path, fmt)
    check = guest_mod.check_image(path, fmt, g.disks.size)
    assert check.data_sha256 == g.disks.data_sha256
    assert check.point_in_time, check.counters
    return image


def test_live_snapshot_into_glance(conf, workdir, glance_url, qcow2_guest):
    before = GuestBefore(qcow2_guest)
    base_ref = str(uuid.uuid4())
    result = take(conf, qcow2_guest, store='glance+' + glance_url,
                  method='live', metadata={'base_image_ref': base_ref,
                                           'user_id': 'u-1'})
    assert result.method == 'live'
    image = assert_good_glance_image(glance_url, result, qcow2_guest,
                                     workdir, 'qcow2')
    assert image['base_image_ref'] == base_ref
    assert image['user_id'] == 'u-1'
    assert image['snapshot_quiesced'] == 'false'
    assert_no_temp_files(conf)
    assert_guest_as_before(qcow2_guest, before)


def test_cold_raw_snapshot_into_configured_glance(conf, workdir, glance_url,
                                                  qcow2_guest):
    conf.set_override('endpoint_override', glance_url, group='snapshot_glance')
    before = GuestBefore(qcow2_guest)
    result = take(conf, qcow2_guest, store='glance', method='cold',
                  image_format='raw')
    assert result.method == 'cold'
    assert_good_glance_image(glance_url, result, qcow2_guest, workdir, 'raw')
    assert_no_temp_files(conf)
    assert_guest_as_before(qcow2_guest, before)


def test_precreated_record_is_filled(conf, workdir, glance_url, qcow2_guest):
    # As Nova's compute API does before it calls the driver.
    record = glance_stack.client(glance_url).images.create(
        name='nova-made', container_format='bare', disk_format='qcow2',
        visibility='private', image_type='snapshot', owner_specified='x')
    result = take(conf, qcow2_guest, store='glance+' + glance_url,
                  image_id=record['id'])
    assert result.image == record['id']
    image = assert_good_glance_image(glance_url, result, qcow2_guest,
                                     workdir, 'qcow2')
    assert image['name'] == 'nova-made'
    assert image['owner_specified'] == 'x'


def test_active_record_is_refused_and_kept(conf, glance_url, qcow2_guest):
    gc = glance_stack.client(glance_url)
    record = gc.images.create(name='done', container_format='bare',
                              disk_format='raw')
    gc.images.upload(record['id'], io.BytesIO(b'x' * 512))
    before = GuestBefore(qcow2_guest)
    with pytest.raises(exception.ImageNotQueued) as e:
        take(conf, qcow2_guest, store='glance+' + glance_url,
             image_id=record['id'])
    assert 'is active, not queued' in str(e.value)
    assert gc.images.get(record['id'])['status'] == 'active'
    assert_no_temp_files(conf)
    assert_guest_as_before(qcow2_guest, before)


def test_missing_record(conf, glance_url, qcow2_guest):
    missing = str(uuid.uuid4())
    with pytest.raises(exception.ImageNotFound) as e:
        take(conf, qcow2_guest, store='glance+' + glance_url,
             image_id=missing)
    assert missing in str(e.value)
    assert_no_temp_files(conf)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize('fault', ['raise', 'truncate'])
def test_stream_error_leaves_nothing(conf, glance_url, qcow2_guest, fault):
    """The data source fails mid-upload: Ctrl-C (an exception out of the
    progress callback), or the image file ending early.
    """
    if fault == 'truncate':
        # NOTE: a live copy through a mirror uploads a file (one through
        # a backup job streams).
        conf.set_override('live_copy_style', 'blockcopy',
                          group='snapshot_libvirt')
    known = set(glance_stack.image_ids(glance_url))
    before = GuestBefore(qcow2_guest)
    seen = []

    def progress(stage, fraction):
        if stage != 'upload' or not 0 < fraction < 1 or seen:
            return
        seen.append(fraction)
        if fault == 'raise':
            raise Interrupt()
        (path,) = [os.path.join(d, f)
                   for d, _, files in os.walk(conf.snapshot.temp_directory)
                   for f in files]
        os.truncate(path, 4 * guest_mod.MiB)

    expected = Interrupt if fault == 'raise' else exception.StoreWriteFailed
    with pytest.raises(expected) as e:
        take(conf, qcow2_guest, store='glance+' + glance_url,
             progress=progress)
    if fault == 'truncate':
        assert 'ended after' in str(e.value)
    assert seen
    assert set(glance_stack.image_ids(glance_url)) == known
    assert_no_temp_files(conf)
    assert_guest_as_before(qcow2_guest, before)


def test_glance_stopped_mid_upload(conf, glance_instances, qcow2_guest):
    """Glance goes away during the upload and comes back: the image the
    snapshot made is deleted once it is back.
    """
    url = glance_instances('victim')
    before = GuestBefore(qcow2_guest)
    restart = threading.Timer(1.0, glance_stack.glance_sh,
                              args=('restart', 'victim'))

    stopped = []

    def progress(stage, fraction):
        if stage == 'upload' and 0 < fraction < 1 and not stopped:
            glance_stack.glance_sh('stop', 'victim')
            stopped.append(fraction)
            restart.start()

    try:
        with pytest.raises(exception.StoreUnavailable) as e:
            take(conf, qcow2_guest, store='glance+' + url,
                 progress=progress)
    finally:
        if stopped:
            restart.join()
    assert stopped, 'the upload ended before Glance could be stopped'
    assert 'unreachable' in str(e.value)
    assert glance_stack.image_ids(url) == []
    assert_no_temp_files(conf)
    assert_guest_as_before(qcow2_guest, before)


def test_unreachable_endpoint_touches_nothing(conf, qcow2_guest):
    conf.set_override('connect_retries', 1, group='snapshot_glance')
    before = GuestBefore(qcow2_guest)
    url = 'http://127.0.0.1:%d' % free_port()
    with pytest.raises(exception.StoreUnavailable) as e:
        take(conf, qcow2_guest, store='glance+' + url)
    assert str(e.value).startswith('Image store Glance at %s cannot be '
                                   'used: unreachable' % url)
    assert '\n' not in str(e.value)
    assert_no_temp_files(conf)
    assert_guest_as_before(qcow2_guest, before)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_connection_errors_are_retried(conf, workdir, qcow2_guest):
    """Glance is still starting when the snapshot begins: the store's
    retries with backoff reach it.
    """
    conf.set_override('connect_retries', 6, group='snapshot_glance')
    port = free_port()
    starter = threading.Thread(target=glance_stack.glance_sh,
                               args=('start', 'late'),
                               kwargs={'GLANCE_PORT': str(port)})
    starter.start()
    try:
        result = take(conf, qcow2_guest,
                      store='glance+http://127.0.0.1:%d' % port)
        starter.join()
        url = glance_stack.endpoint('late')
        assert url == 'http://127.0.0.1:%d' % port
        assert glance_stack.image_ids(url) == [result.image]
        assert_good_glance_image(url, result, qcow2_guest, workdir,
                                 'qcow2')
    finally:
        starter.join()
        glance_stack.glance_sh('stop', 'late')


@pytest.fixture(scope='module')
def guarded_url(glance_instances):
    """A Glance that wants credentials, as behind keystonemiddleware, and
    takes images of at most 16 MiB.
    """
    return glance_instances('guarded', GLANCE_FLAVOR='trusted',
                            GLANCE_IMAGE_SIZE_CAP=str(16 * guest_mod.MiB))


def test_size_limit_deletes_the_image(conf, guarded_url, qcow2_guest):
    store = glance_store.GlanceStore(
        conf, 'glance+' + guarded_url,
        session=glance_stack.session(guarded_url,
                                     glance_stack.MEMBER_HEADERS))
    before = GuestBefore(qcow2_guest)
    with pytest.raises(exception.StoreRejected) as e:
        take(conf, qcow2_guest, store=store)
    assert 'over a size limit or quota (HTTP 413' in str(e.value)
    assert glance_stack.image_ids(guarded_url,
                                  glance_stack.MEMBER_HEADERS) == []
    assert_no_temp_files(conf)
    assert_guest_as_before(qcow2_guest, before)


def test_unsafe_data_is_refused(conf, workdir, glance_url):
    """Glance's format checks stay on: a qcow2 that points at a backing
    file is refused, and the record is deleted.
    """
    known = set(glance_stack.image_ids(glance_url))
    store = glance_store.GlanceStore(conf, 'glance+' + glance_url)
    meta = base.ImageMeta(name='unsafe', disk_format='qcow2')
    backing = os.path.join(workdir, 'base.raw')
    guest_mod.run('qemu-img', 'create', '-f', 'raw', backing, '1M')
    with pytest.raises(exception.StoreRejected) as e:
        with store.begin(meta, workdir=conf.snapshot.temp_directory) as p:
            guest_mod.run('qemu-img', 'create', '-f', 'qcow2', '-F', 'raw',
                          '-b', backing, p.path)
            p.commit()
    assert str(e.value).startswith(
        'Glance at %s refused the image: Glance does not accept its data as '
        'qcow2 (HTTP 415 Unsupported Media Type' % glance_url)
    assert 'safety checks' in str(e.value)
    assert set(glance_stack.image_ids(glance_url)) == known
    assert_no_temp_files(conf)


UPLOAD_SCRIPT = '''
import resource, sys
from oslo_config import cfg
from nova_snapshot_ext import conf as nse_conf
from nova_snapshot_ext.stores import base
conf = cfg.ConfigOpts()
nse_conf.register_opts(conf)
conf([], default_config_files=[], default_config_dirs=[])
url, workdir, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = base.load(conf, 'glance+' + url)
with store.begin(base.ImageMeta(name='mem', disk_format='raw'),
                 workdir=workdir) as pending:
    with open(pending.path, 'wb') as f:
        f.truncate(size)
    image = pending.commit()
store.delete(image.id)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
'''


def peak_rss_mib(url, workdir, size):
    out = subprocess.run([sys.executable, '-c', UPLOAD_SCRIPT, url, workdir,
                          str(size)], check=True, capture_output=True,
                         text=True).stdout
    return int(out)


def test_upload_memory_stays_flat(workdir, glance_url):
    """The peak memory of an upload does not grow with the image: 512 MiB
    costs no more than 16 MiB does, give or take a few chunks.
    """
    small = peak_rss_mib(glance_url, workdir, 16 * guest_mod.MiB)
    large = peak_rss_mib(glance_url, workdir, 512 * guest_mod.MiB)
    assert large - small < 16, (small, large)


def _regular(path):
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _files_under(path):
    return [os.path.join(d, f) for d, _, files in os.walk(path)
            for f in files]


@pytest.mark.parametrize('fmt', ['raw', 'qcow2'])
def test_live_streams_into_glance_with_nothing_staged(
        conf, workdir, glance_url, qcow2_guest, fmt):
    # Through a backup job, a raw image (the export's bytes) or a qcow2
    # image (written front to back) goes from the guest's disk to Glance
    # with no file on the host: the temporary directory holds the job's
    # NBD socket and its scratch file, nothing else.
    before = GuestBefore(qcow2_guest)
    staged = []

    def progress(stage, fraction):
        if stage == 'upload':
            staged.extend(
                p for p in _files_under(conf.snapshot.temp_directory)
                if _regular(p) and not p.endswith('.scratch'))

    result = take(conf, qcow2_guest, store='glance+' + glance_url,
                  method='live', image_format=fmt, progress=progress)
    assert result.live_copy_style == 'backup'
    assert staged == []
    image = assert_good_glance_image(glance_url, result, qcow2_guest,
                                     workdir, fmt)
    assert image['live_copy_style'] == 'backup'
    assert_no_temp_files(conf)
    assert_guest_as_before(qcow2_guest, before)


def test_stream_reader_killed_leaves_nothing(conf, glance_url, qcow2_guest):
    known = set(glance_stack.image_ids(glance_url))
    before = GuestBefore(qcow2_guest)
    killed = []

    def progress(stage, fraction):
        if stage != 'upload' or not 0 < fraction < 1 or killed:
            return
        out = subprocess.run(['pgrep', '-P', str(os.getpid()), 'nbdcopy'],
                             capture_output=True, text=True).stdout.split()
        for pid in out:
            os.kill(int(pid), signal.SIGKILL)
        killed.extend(out)

    with pytest.raises(exception.ConversionFailed, match='nbdcopy'):
        take(conf, qcow2_guest, store='glance+' + glance_url,
             method='live', image_format='raw', progress=progress)
    assert killed, 'nbdcopy was not running'
    assert set(glance_stack.image_ids(glance_url)) == known
    assert_no_temp_files(conf)
    assert_guest_as_before(qcow2_guest, before)
