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

"""On a shared host, another local user reads no guest's disk: live, cold
and incremental snapshots into a new directory store, then (and during
them) the user ``nobody`` tries to read what they wrote.
"""

import glob
import os
import re
import shutil
import stat
import subprocess
import uuid

import pytest

from tests.functional.conftest import make_conf
from tests.functional.test_snapshot import take

#: The user and group of another local user, with no supplementary group.
NOBODY = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups',
          '--']


def as_nobody(*cmd):
    # NOTE: bytes, not text: what nobody manages to read is a disk.
    done = subprocess.run(NOBODY + list(cmd), capture_output=True)
    done.stderr = done.stderr.decode(errors='replace')
    return done


def denied(*cmd):
    """``cmd`` as nobody fails, and for want of permission."""
    done = as_nobody(*cmd)
    return done.returncode != 0 and 'Permission denied' in done.stderr


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def qemu_gid(g):
    found = re.search(r"<label>\+?\d+:\+?(\d+)</label>", g.dom.XMLDesc(0))
    return int(found.group(1)) if found else 0


class Probe:
    """What the store and the temporary directory look like while the
    image is being written (at the start of the ``convert`` stage).
    """

    def __init__(self, conf, store):
        self.conf, self.store, self.seen = conf, store, []
        self.armed = False

    def arm(self):
        """Look once during the next snapshot."""
        self.armed = True
        return self

    def __call__(self, stage, fraction):
        if stage != 'convert' or not self.armed:
            return
        self.armed = False
        partials = glob.glob(os.path.join(self.store, '.*.partial'))
        temps = glob.glob(os.path.join(self.conf.snapshot.temp_directory,
                                       'snap-*'))
        files = [p for d in partials + temps
                 for p in glob.glob(os.path.join(d, '*'))
                 if os.path.isfile(p)]
        self.seen.append({
            'dirs': {d: os.lstat(d) for d in partials + temps},
            'files': {p: mode(p) for p in files},
            'nobody': [denied('ls', d) for d in partials + temps] +
                      [denied('cat', p) for p in files]})


@pytest.fixture(scope='module')
def taken(workroot, _breakable_guest):
    """Live (backup job and block copy), cold, and a full then an
    incremental snapshot of one guest into a new directory store.
    """
    g = _breakable_guest
    if not g.dom.isActive():
        g.start()
    root = os.path.join(workroot, 'private-%s' % uuid.uuid4().hex[:6])
    os.makedirs(root)
    os.chmod(root, 0o755)
    conf = make_conf(root)
    store = os.path.join(root, 'store')
    probe = Probe(conf, store)
    results = [take(conf, g, store='file://' + store, method='live',
                    progress=probe.arm())]
    conf.set_override('live_copy_style', 'blockcopy',
                      group='snapshot_libvirt')
    results.append(take(conf, g, store='file://' + store, method='live',
                        progress=probe.arm()))
    conf.clear_override('live_copy_style', group='snapshot_libvirt')
    results.append(take(conf, g, store='file://' + store, method='cold',
                        progress=probe.arm()))
    for _ in range(2):
        results.append(take(conf, g, store='file://' + store,
                            incremental=True, progress=probe.arm()))
    assert results[-1].incremental_of == results[-2].image_id
    # A file another user may read, beside the store: the check that
    # "nobody" reaches this far, so that a denial below is the modes'.
    control = os.path.join(root, 'control')
    with open(control, 'w') as f:
        f.write('readable\n')
    os.chmod(control, 0o644)
    yield conf, store, results, probe, qemu_gid(g)
    shutil.rmtree(root, ignore_errors=True)


def test_nobody_reaches_the_store_but_reads_nothing_in_it(taken):
    conf, store, results, _probe, _gid = taken
    assert as_nobody('cat', os.path.join(os.path.dirname(store),
                                         'control')).returncode == 0
    assert [(r.method, r.live_copy_style) for r in results] == [
        ('live', 'backup'), ('live', 'blockcopy'), ('cold', None),
        ('live', 'backup'), ('live', 'backup')]
    assert denied('ls', store)
    for result in results:
        image_dir = os.path.dirname(result.image)
        assert denied('cat', result.image)
        assert denied('cat', os.path.join(image_dir, 'metadata.json'))
        assert denied('ls', image_dir)
        assert denied('qemu-img', 'info', '-U', result.image)


def test_store_images_and_metadata_are_the_owners_only(taken):
    conf, store, results, _probe, _gid = taken
    assert mode(store) == 0o700
    for result in results:
        image_dir = os.path.dirname(result.image)
        # NOTE: domain.xml: the guest's definition, for restore.
        assert sorted(os.listdir(image_dir)) == ['domain.xml', 'image.qcow2',
                                                 'metadata.json']
        assert mode(image_dir) == 0o700
        for name in os.listdir(image_dir):
            assert mode(os.path.join(image_dir, name)) == 0o600, name
    for sub in ('snapshots', 'locks', 'checkpoints'):
        assert mode(os.path.join(conf.state_path, sub)) == 0o700


def test_while_writing_partial_and_temporary_files_are_private(taken):
    conf, store, results, probe, gid = taken
    assert len(probe.seen) == len(results)
    temps = 0
    for seen in probe.seen:
        assert seen['files'], 'the probe saw no file being written'
        assert all(seen['nobody']), seen
        for path, st in seen['dirs'].items():
            if path.endswith('.partial'):
                assert stat.S_IMODE(st.st_mode) == 0o700, path
            else:
                temps += 1
                # NOTE: QEMU (another user) opens files here by name:
                # its group may pass through, nobody else.
                assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o710,
                                                                 gid), path
        for path, file_mode in seen['files'].items():
            assert file_mode == 0o600, path
    # The backup jobs' scratch files and the block copy's delta.
    assert temps == 4
    names = [os.path.basename(p) for seen in probe.seen
             for p in seen['files']]
    assert names.count('vda.scratch') == 3
    assert names.count('delta.qcow2') == 1
    tmp = conf.snapshot.temp_directory
    assert (mode(tmp), os.lstat(tmp).st_gid) == (0o710, gid)
    assert os.listdir(tmp) == []
