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

"""Private files: the modes of what holds guest data, whatever the umask,
and the operator's group of the directory store.
"""

import grp
import json
import os
import stat

import pytest

from nova_snapshot_ext.backends import steps
from nova_snapshot_ext import exception
from nova_snapshot_ext import private
from nova_snapshot_ext.stores import base as store_base
from nova_snapshot_ext.stores import file as file_store


@pytest.fixture(autouse=True)
def loose_umask():
    """The loosest umask: the modes must not come from it."""
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def a_group():
    """(name, gid) of a group this user may give files to: one it is not
    in already when root.
    """
    if os.geteuid() == 0:
        for name in ('nogroup', 'nobody', 'daemon'):
            try:
                return name, grp.getgrnam(name).gr_gid
            except KeyError:
                pass
    gid = os.getegid()
    return grp.getgrgid(gid).gr_name, gid


def test_create_is_0600_and_writers_keep_it(tmp_path):
    path = tmp_path / 'image.qcow2'
    private.create(str(path))
    assert mode(path) == 0o600
    with open(path, 'wb') as f:
        f.write(b'guest data')
    assert mode(path) == 0o600
    with pytest.raises(FileExistsError):
        private.create(str(path))


def test_open_new_makes_private_and_truncates(tmp_path):
    path = tmp_path / 'metadata.json'
    path.write_text('old and long')
    os.chmod(path, 0o644)
    with private.open_new(str(path)) as f:
        f.write('new')
    assert (path.read_text(), mode(path)) == ('new', 0o600)
    with private.open_new(str(tmp_path / 'raw'), 'wb') as f:
        f.write(b'\0')
    assert mode(tmp_path / 'raw') == 0o600


def test_restrict_without_a_group(tmp_path):
    (tmp_path / 'd').mkdir(mode=0o777)
    (tmp_path / 'f').write_text('x')
    os.chmod(tmp_path / 'f', 0o666)
    private.restrict(str(tmp_path / 'd'))
    private.restrict(str(tmp_path / 'f'))
    assert (mode(tmp_path / 'd'), mode(tmp_path / 'f')) == (0o700, 0o600)


def test_restrict_with_a_group(tmp_path):
    _name, gid = a_group()
    (tmp_path / 'd').mkdir()
    (tmp_path / 'f').write_text('x')
    for name, want in (('d', 0o750), ('f', 0o640)):
        private.restrict(str(tmp_path / name), gid)
        st = os.lstat(tmp_path / name)
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (want, gid)


def test_makedirs_makes_the_leaf_private_and_keeps_an_existing_one(
        tmp_path):
    leaf = tmp_path / 'a' / 'images'
    private.makedirs(str(leaf))
    assert mode(leaf) == 0o700
    os.chmod(leaf, 0o755)
    private.makedirs(str(leaf))
    assert mode(leaf) == 0o755
    (tmp_path / 'file').write_text('')
    with pytest.raises(FileExistsError):
        private.makedirs(str(tmp_path / 'file'))


def test_qemu_dir_is_qemus_groups(tmp_path):
    _name, gid = a_group()
    private.qemu_dir(str(tmp_path / 'q'), (64055, gid))
    st = os.lstat(tmp_path / 'q')
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o710, gid)


def test_qemu_dir_traversable_by_anyone_when_the_group_is_refused(
        tmp_path, monkeypatch):
    def refused(*args):
        raise PermissionError(1, 'Operation not permitted')
    monkeypatch.setattr(os, 'chown', refused)
    private.qemu_dir(str(tmp_path / 'q'), (64055, 64055))
    private.qemu_dir(str(tmp_path / 'unknown'), None)
    assert mode(tmp_path / 'q') == mode(tmp_path / 'unknown') == 0o711


@pytest.mark.parametrize('dir_mode,owner,group,qemu,ok', [
    (0o711, 0, 0, (64055, 64055), True),
    (0o710, 0, 64055, (64055, 64055), True),
    (0o710, 0, 0, (64055, 64055), False),
    (0o700, 64055, 0, (64055, 64055), True),
    (0o700, 0, 0, (0, 0), True),
    (0o750, 0, 0, None, False),
    (0o701, 0, 0, None, True),
])
def test_qemu_traverses(monkeypatch, dir_mode, owner, group, qemu, ok):
    st = os.stat_result((stat.S_IFDIR | dir_mode, 0, 0, 2, owner, group, 0,
                         0, 0, 0))
    monkeypatch.setattr(os, 'stat', lambda path: st)
    assert private.qemu_traverses('/x', qemu) is ok


def test_group_id():
    name, gid = a_group()
    assert private.group_id(None, 'opt') is None
    assert private.group_id('', 'opt') is None
    assert private.group_id(name, 'opt') == gid
    assert private.group_id(str(gid), 'opt') == gid
    with pytest.raises(exception.InvalidInput, match='opt = no-such-grp'):
        private.group_id('no-such-grp', 'opt')


def stored_image(conf, directory, monkeypatch):
    """An image written into a new directory store, as a snapshot does."""
    monkeypatch.setattr(file_store.qemu_img, 'info',
                        lambda *args, **kw: {'virtual-size': 1024})
    store = file_store.FileStore(conf, 'file://%s' % directory)
    store.check()
    pending = store.begin(store_base.ImageMeta('snap', 'qcow2'))
    assert (mode(pending.partial), mode(pending.path)) == (0o700, 0o600)
    with open(pending.path, 'wb') as f:
        f.write(b'guest data')
    return store, pending.commit()


def test_file_store_images_are_private(conf, tmp_path, monkeypatch):
    directory = tmp_path / 'new' / 'store'
    _store, stored = stored_image(conf, directory, monkeypatch)
    image_dir = os.path.dirname(stored.location)
    assert mode(directory) == 0o700
    assert mode(image_dir) == 0o700
    assert mode(stored.location) == 0o600
    assert mode(os.path.join(image_dir, 'metadata.json')) == 0o600


def test_file_group_makes_images_group_readable(conf, tmp_path,
                                                monkeypatch):
    name, gid = a_group()
    conf.set_override('file_group', name, group='snapshot_file_store')
    directory = tmp_path / 'store'
    _store, stored = stored_image(conf, directory, monkeypatch)
    image_dir = os.path.dirname(stored.location)
    for path, want in ((directory, 0o750), (image_dir, 0o750),
                       (stored.location, 0o640),
                       (os.path.join(image_dir, 'metadata.json'), 0o640)):
        st = os.lstat(path)
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (want, gid), path
    with open(os.path.join(image_dir, 'metadata.json')) as f:
        assert json.load(f)['name'] == 'snap'


def test_file_group_unknown_is_refused_before_anything(conf, tmp_path):
    conf.set_override('file_group', 'no-such-grp',
                      group='snapshot_file_store')
    store = file_store.FileStore(conf, 'file://%s' % (tmp_path / 's'))
    with pytest.raises(exception.InvalidInput,
                       match=r'\[snapshot_file_store\] file_group'):
        store.check()
    assert not (tmp_path / 's').exists()


def test_file_group_not_ours_is_refused_by_check(conf, tmp_path,
                                                 monkeypatch):
    name, gid = a_group()
    conf.set_override('file_group', name, group='snapshot_file_store')
    real_chown = os.chown

    def chown(path, uid, group, **kw):
        if group == gid and os.path.basename(path).startswith('.probe-'):
            raise PermissionError(1, 'Operation not permitted')
        return real_chown(path, uid, group, **kw)
    monkeypatch.setattr(os, 'chown', chown)
    store = file_store.FileStore(conf, 'file://%s' % (tmp_path / 's'))
    with pytest.raises(exception.StoreUnavailable,
                       match='cannot be given to group %s' % name):
        store.check()
    assert os.listdir(tmp_path / 's') == []


def test_temp_directory_is_qemus_groups(conf, tmp_path):
    _name, gid = a_group()
    conf.set_override('temp_directory', str(tmp_path / 'tmp'),
                      group='snapshot')
    # NOTE: QEMU as this user: pytest's own directories are 0700.
    with steps.temp_directory(conf, qemu=(os.geteuid(), gid)) as path:
        for d in (path, os.path.dirname(path)):
            st = os.lstat(d)
            assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o710, gid)
    assert not os.path.exists(path)


def test_temp_directory_without_qemus_label_lets_anyone_through(
        conf, tmp_path, monkeypatch):
    # NOTE: pytest's own directories are 0700; QEMU's user is unknown.
    monkeypatch.setattr(steps, '_check_traversable', lambda *args: None)
    conf.set_override('temp_directory', str(tmp_path / 'tmp'),
                      group='snapshot')
    with steps.temp_directory(conf, qemu=(0, 0)) as path:
        assert mode(path) == mode(os.path.dirname(path)) == 0o711


def test_temp_directory_qemu_cannot_reach_is_refused(conf, tmp_path):
    parent = tmp_path / 'closed'
    parent.mkdir(mode=0o700)
    conf.set_override('temp_directory', str(parent / 'tmp'),
                      group='snapshot')
    with pytest.raises(exception.InvalidInput,
                       match="not traversable by QEMU's user or group"):
        with steps.temp_directory(conf, qemu=(64055, 64055)):
            pass
