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

"""A delete of the directory store killed part-way: the image is gone as
a whole, ``gc`` removes the rest, and nothing else is touched.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys

import pytest

from nova_snapshot_ext.cleanup import gc
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import durable
from nova_snapshot_ext.stores import file as file_store
from nova_snapshot_ext import verify
from tests import polling

DOOMED = '11111111-1111-4111-8111-111111111111'
KEPT = '22222222-2222-4222-8222-222222222222'
#: Files of the image deleted; the child stops after STOP_AFTER unlinks.
FILES, STOP_AFTER = 2000, 500

#: The child: delete the image, stopping itself (SIGSTOP) after
#: STOP_AFTER files are removed, so that the test kills it there. The stop
#: is the child's own (os.unlink wrapped), so that it is the same point
#: in any version of FileStore.delete.
CHILD = '''
import os, signal, sys
from oslo_config import cfg
from nova_snapshot_ext import conf as nse_conf
from nova_snapshot_ext.stores import file as file_store

directory, image_id, stop_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
real_unlink = os.unlink
count = 0


def unlink(*args, **kwargs):
    global count
    real_unlink(*args, **kwargs)
    count += 1
    if count == stop_after:
        os.kill(os.getpid(), signal.SIGSTOP)


os.unlink = unlink
conf = cfg.ConfigOpts()
nse_conf.register_opts(conf)
conf([], default_config_files=[], default_config_dirs=[])
file_store.FileStore(conf, 'file://' + directory).delete(image_id)
'''


def _image(directory, image_id, files=0):
    path = os.path.join(directory, image_id)
    os.makedirs(path)
    with open(os.path.join(path, 'image.raw'), 'wb') as f:
        f.write(os.urandom(4096))
    for n in range(files):
        with open(os.path.join(path, 'chunk-%05d' % n), 'wb') as f:
            f.write(b'x')
    doc = {'id': image_id, 'name': image_id[:4], 'format': 'raw',
           'size': 4096, 'sha256': durable.sha256_of(
               os.path.join(path, 'image.raw')),
           'created_at': '2026-01-01T00:00:00+00:00'}
    with open(os.path.join(path, file_store.METADATA), 'w') as f:
        json.dump(doc, f)


def _tree(directory):
    """Every file under ``directory`` with the sha256 of its content."""
    found = {}
    for root, _dirs, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, 'rb') as f:
                found[os.path.relpath(path, directory)] = hashlib.sha256(
                    f.read()).hexdigest()
    return found


def _stopped(pid):
    with open('/proc/%d/stat' % pid) as f:
        return f.read().rsplit(')', 1)[1].split()[0] == 'T'


def _kill_in_the_middle(directory, image_id):
    proc = subprocess.Popen(
        [sys.executable, '-c', CHILD, directory, image_id, str(STOP_AFTER)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def stopped():
        assert proc.poll() is None, 'the delete ended before its stop: ' \
            '%s' % proc.stdout.read().decode()
        return _stopped(proc.pid)

    try:
        polling.wait_until(stopped, 60, 0.02, 'the delete never stopped')
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()


@pytest.fixture
def store(conf):
    s = file_store.FileStore(conf, 'file')
    os.makedirs(s.directory)
    return s


def test_a_delete_killed_in_the_middle_leaves_no_half_image(store, conf):
    _image(store.directory, DOOMED, files=FILES)
    _image(store.directory, KEPT)
    other = os.path.join(store.directory, 'not-an-image.txt')
    with open(other, 'w') as f:
        f.write('mine\n')
    kept = _tree(os.path.join(store.directory, KEPT))
    _kill_in_the_middle(store.directory, DOOMED)
    left = sorted(os.listdir(store.directory))
    # NOTE: part of the image is left (the delete was killed), but only
    # under a hidden name: not the image, not listed, not verifiable.
    assert DOOMED not in left, 'the image is half there under its id'
    assert [d['id'] for d in store.list()] == [KEPT]
    with pytest.raises(exception.ImageNotFound):
        verify.verify(conf, store, DOOMED)
    (hidden,) = [n for n in left if n.startswith('.%s.' % DOOMED)]
    assert hidden.endswith(file_store.DELETING_SUFFIX)
    assert 0 < len(os.listdir(os.path.join(store.directory, hidden))) \
        < FILES

    # NOTE: a delete that may still run (changed within the minimum age)
    # is left alone.
    assert [a for a in gc.collect_garbage(conf, store, dry_run=True)
            if hidden in a.target] == []
    actions = gc.collect_garbage(conf, store, min_age=0)
    assert [(a.verb, os.path.basename(a.target), a.error)
            for a in actions] == [('remove directory', hidden, None)]
    assert 'half-deleted image left by an interrupted delete' in \
        actions[0].detail
    assert sorted(os.listdir(store.directory)) == [KEPT, 'not-an-image.txt']
    assert _tree(os.path.join(store.directory, KEPT)) == kept
    with open(other) as f:
        assert f.read() == 'mine\n'


def test_a_delete_renames_first_and_leaves_nothing(store):
    _image(store.directory, DOOMED, files=3)
    _image(store.directory, KEPT)
    store.delete(DOOMED)
    assert os.listdir(store.directory) == [KEPT]
    # NOTE: deleting what is not there (any more) is no error.
    store.delete(DOOMED)
    store.delete('not-a-uuid')
    assert os.listdir(store.directory) == [KEPT]


def test_gc_sweeps_the_store_it_is_given(conf, tmp_path):
    elsewhere = file_store.FileStore(conf, 'file://%s' % (tmp_path / 'x'))
    os.makedirs(os.path.join(elsewhere.directory, '.%s.abcd%s' % (
        DOOMED, file_store.DELETING_SUFFIX), 'sub'))
    _image(elsewhere.directory, KEPT)
    actions = gc.collect_garbage(conf, elsewhere, min_age=0)
    assert [a.error for a in actions] == [None]
    assert os.listdir(elsewhere.directory) == [KEPT]
