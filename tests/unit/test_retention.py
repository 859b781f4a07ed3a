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

"""``--keep N``: the N newest restore points of a guest stay, whole,
whatever chain they belong to. The choice is checked on its own, then
over many random sequences of full and incremental snapshots, QEMU
killed, flattens failing and our process dying within the retention,
against a store that behaves like the directory store.
"""

import random
import types

import pytest

from nova_snapshot_ext.backends import retention
from nova_snapshot_ext import exception

GUEST = 'guest-uuid'


def doc(image_id, second, parent=None, checkpoint=True, guest=GUEST,
        ns=None):
    d = {'id': image_id, 'source_uuid': guest,
         'created_at': '2026-01-01T00:%02d:%02d+00:00' % divmod(second, 60),
         'incremental_of': parent}
    if checkpoint:
        d['checkpoint'] = 'nse-' + image_id
    if ns is not None:
        d['created_ns'] = ns
    return d


def choose(images, keep, **kwargs):
    return retention.plan(retention.restore_points(images, GUEST), keep,
                          **kwargs)


def test_a_restarted_chain_keeps_n_restore_points():
    # The case by hand: keep 2, A <- B, QEMU killed, C full.
    images = [doc('a', 1), doc('b', 2, 'a'), doc('c', 3)]
    assert choose(images, 2) == retention.Plan(
        keep=('c', 'b'), flatten=('b',), delete=('a',))


def test_one_chain_flattens_the_oldest_kept():
    images = [doc('a', 1), doc('b', 2, 'a'), doc('c', 3, 'b'),
              doc('d', 4, 'c')]
    assert choose(images, 2) == retention.Plan(
        keep=('d', 'c'), flatten=('c',), delete=('b', 'a'))


def test_nothing_to_do_within_n():
    images = [doc('a', 1), doc('b', 2, 'a')]
    assert choose(images, 5) == retention.Plan(
        keep=('b', 'a'), flatten=(), delete=())


def test_other_images_neither_count_nor_go():
    images = [doc('a', 1), doc('plain', 2, checkpoint=False),
              doc('other', 3, guest='another'), doc('b', 4, 'a'),
              doc('c', 5, 'b')]
    assert choose(images, 2) == retention.Plan(
        keep=('c', 'b'), flatten=('b',), delete=('a',))


def test_an_image_not_made_standalone_keeps_its_chain():
    images = [doc('a', 1), doc('b', 2, 'a'), doc('c', 3, 'b'),
              doc('d', 4)]
    assert choose(images, 2, not_flattened={'c'}) == retention.Plan(
        keep=('d', 'c', 'b', 'a'), flatten=(), delete=())


def test_a_chain_broken_below_is_not_flattened_nor_cut():
    # 'a' was deleted by hand: 'c' cannot be made standalone; what it
    # still references stays.
    images = [doc('b', 2, 'a'), doc('c', 3, 'b'), doc('d', 4, 'c')]
    assert choose(images, 1) == retention.Plan(
        keep=('d', 'c', 'b'), flatten=(), delete=())


def test_an_increment_within_the_second_of_its_base_is_newer():
    # Images made before created_ns was recorded: the chain decides.
    images = [doc('z', 7), doc('a', 7, 'z')]
    assert [d['id'] for d in retention.restore_points(images, GUEST)] == [
        'a', 'z']
    # created_ns decides between images of one second.
    images = [doc('b', 7, ns=2), doc('a', 7, ns=1), doc('c', 6, ns=3)]
    assert [d['id'] for d in retention.restore_points(images, GUEST)] == [
        'b', 'a', 'c']


def test_keep_is_at_least_one():
    with pytest.raises(ValueError):
        retention.plan([], 0)


# -- random sequences against a store like the directory store ----------
class Died(BaseException):
    """Our process is killed (SIGKILL) in the middle of retention."""


class FakeStore:
    """The directory store's retention calls. A flatten is two renames:
    cut short after the first, the image stands alone but its metadata
    still names its backing image until ``finish_flatten``.
    """

    def __init__(self, rng):
        self.rng = rng
        self.docs = {}
        self.backing = {}      # what the image file references
        self.half = {}         # image id -> 'copy' | 'renamed'
        self.die_after = None  # calls that change the store before dying
        self.fail_flatten = 0.0

    def _call(self):
        if self.die_after is not None:
            if self.die_after == 0:
                self.die_after = None
                raise Died()
            self.die_after -= 1

    def add(self, d):
        self.docs[d['id']] = d
        self.backing[d['id']] = d.get('incremental_of')

    def list(self):
        return sorted((dict(d) for d in self.docs.values()),
                      key=lambda d: d['created_at'])

    def finish_flatten(self, image_id):
        state = self.half.pop(image_id, None)
        if state == 'renamed':
            self.docs[image_id].update(
                incremental_of=None,
                flattened_from=self.docs[image_id]['incremental_of'])

    def flatten(self, image_id):
        assert image_id not in self.half
        chain, current = [], image_id
        while current is not None:
            assert current in self.docs, 'flatten of a broken chain'
            chain.append(current)
            current = self.backing[current]
        if self.rng.random() < self.fail_flatten:
            raise exception.ConversionFailed(reason='no space left')
        self.half[image_id] = 'copy'
        self._call()
        self.backing[image_id] = None
        self.half[image_id] = 'renamed'
        self._call()
        self.finish_flatten(image_id)

    def delete(self, image_id):
        self._call()
        self.docs.pop(image_id, None)
        self.backing.pop(image_id, None)
        self.half.pop(image_id, None)


class Guest:
    """A guest whose snapshots go into a FakeStore, as the incremental
    backend takes them: incremental on the last restore point while its
    bitmap is good, otherwise a full image.
    """

    def __init__(self, rng, keep):
        self.rng = rng
        self.keep = keep
        self.store = FakeStore(rng)
        self.job = types.SimpleNamespace(
            store=self.store, guest=types.SimpleNamespace(uuid=GUEST,
                                                          name='g'))
        self.taken = []        # restore points taken, oldest first
        self.plain = set()     # images taken without --incremental
        self.base = None       # the image whose bitmap the disk holds
        self.second = self.ns = 0

    def _new(self, **kwargs):
        # NOTE: several images may share a created_at second.
        self.second += self.rng.choice((0, 0, 1, 2))
        self.ns += 1
        d = doc('i%03d' % self.ns, self.second, ns=self.ns, **kwargs)
        self.store.add(d)
        return d['id']

    def snapshot(self, keep):
        parent = self.base if self.base in self.store.docs else None
        image_id = self._new(parent=parent)
        self.taken.append(image_id)
        self.base = image_id
        if keep:
            return retention.retain(self.job, keep)

    def plain_snapshot(self):
        self.plain.add(self._new(checkpoint=False))

    def kill_qemu(self):
        self.base = None

    def delete_newest_by_hand(self):
        # The newest has no dependents: ``delete IMAGE`` takes it alone.
        # Restore points: from now on, those left.
        self.taken = [i for i in self.taken if i in self.store.docs]
        if self.taken:
            self.store.delete(self.taken.pop())


def check_always(g):
    store = g.store
    # No image references one that is gone.
    for image_id in store.docs:
        current = store.backing[image_id]
        while current is not None:
            assert current in store.docs, (image_id, current)
            current = store.backing[current]
    assert g.plain <= set(store.docs), 'an image without --incremental ' \
                                       'was deleted'
    # The newest are there, whatever happened during retention.
    for image_id in g.taken[-g.keep:]:
        assert image_id in store.docs, image_id


def check_retained(g, done):
    store = g.store
    points = [i for i in g.taken if i in store.docs]
    newest = set(g.taken[-g.keep:])
    assert len(points) >= min(g.keep, len(g.taken))
    assert newest <= set(points)
    needed = set()
    for image_id in newest:
        current = store.backing[image_id]
        while current is not None:
            needed.add(current)
            current = store.backing[current]
    extra = set(points) - newest
    assert extra <= needed, 'older images kept for nothing: %s' % extra
    if not g.store.fail_flatten:
        assert not extra, 'more than %d restore points' % g.keep
    assert set(done.keep) == set(points)


@pytest.mark.parametrize('seed', range(400))
def test_random_sequences_keep_the_n_newest_whole(seed):
    rng = random.Random(seed)
    g = Guest(rng, keep=rng.randint(1, 4))
    g.store.fail_flatten = rng.choice((0.0, 0.0, 0.3))
    for _step in range(rng.randint(5, 40)):
        what = rng.random()
        if what < 0.15:
            g.kill_qemu()
        elif what < 0.2:
            g.plain_snapshot()
        elif what < 0.25:
            g.delete_newest_by_hand()
        elif what < 0.3:
            g.snapshot(keep=0)
        elif what < 0.45:
            # Our process dies within the retention; the next snapshot
            # with --keep finishes it.
            g.store.die_after = rng.randint(0, 3)
            try:
                g.snapshot(keep=g.keep)
            except Died:
                pass
            g.store.die_after = None
        else:
            check_retained(g, g.snapshot(keep=g.keep))
        check_always(g)
