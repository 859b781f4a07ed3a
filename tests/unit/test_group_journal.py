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

"""An --all-disks group in the journal: whole or absent (issue 22)."""

import types

import pytest

from nova_snapshot_ext.backends import all_disks
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import undo


class Store:
    spec, RECOVERABLE = 'file:///images', True

    def __init__(self):
        self.deleted = []

    def delete(self, image_id):
        self.deleted.append(image_id)


def group(tmp_path, monkeypatch, fail_at=None):
    """Commit a group of three images; the journal as each commit saw it
    (kind and done of its steps), the store, and the journal.
    """
    store, seen = Store(), []
    jobs = [types.SimpleNamespace(store=store) for _ in range(3)]
    pendings = [types.SimpleNamespace(image_id='id%d' % i) for i in range(3)]

    def commit(job, pending, outcome):
        seen.append([(s.data['id'], s.done) for s in journal.current().steps
                     if s.kind == journal.GROUP_IMAGE])
        if pending.image_id == fail_at:
            raise exception.StoreWriteFailed(store=store, reason='full')
        return types.SimpleNamespace(id=pending.image_id)

    monkeypatch.setattr(all_disks.finish, 'commit', commit)
    with journal.opened(str(tmp_path), 'u', 'g', 'qemu:///system',
                        store.spec, 'snap') as j:
        try:
            all_disks._commit_all(jobs, pendings, None, 'grp')
        except exception.StoreWriteFailed:
            pass
        return seen, store, j


def test_committed_images_stay_undoable_until_the_group_is_whole(
        tmp_path, monkeypatch):
    seen, store, j = group(tmp_path, monkeypatch)
    # A kill before the last commit leaves every image of the group to
    # recover, committed ones included.
    assert seen[-1] == [('id0', False), ('id1', False), ('id2', False)]
    assert [s.done for s in j.steps] == [True, True, True]
    assert j.steps[0].data == {'id': 'id0', 'store': 'file:///images',
                               'group': 'grp'}
    assert store.deleted == []


def test_a_failed_commit_deletes_the_committed_images(tmp_path,
                                                      monkeypatch):
    seen, store, j = group(tmp_path, monkeypatch, fail_at='id2')
    assert store.deleted == ['id0', 'id1']
    assert j.pending() == []


@pytest.mark.parametrize('spec,verb', [('file:///images', 'delete'),
                                       (None, 'keep')])
def test_recover_deletes_an_image_of_a_group_not_whole(spec, verb):
    store, acts = Store(), []
    r = types.SimpleNamespace(
        store=lambda s: store if s else None,
        act=lambda v, target, detail='', run=None: (
            acts.append((v, target)), run and run()))
    step = journal.Step(journal.GROUP_IMAGE, {'id': 'id0', 'store': spec,
                                              'group': 'grp'})
    # NOTE: found as recover finds it: the undo all_disks declares.
    undo.handler(journal.GROUP_IMAGE)(r, step)
    assert acts == [(verb, 'image id0')]
    assert store.deleted == (['id0'] if spec else [])
