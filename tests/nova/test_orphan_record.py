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

"""The record of a snapshot that failed while Glance was away.

tests/cloud stops the real Glance during a snapshot; these cover what it
cannot show in a few seconds: a Glance that stays away, an image that
became active meanwhile, a record someone else deleted.
"""

from nova import exception as nova_exc

from nova_snapshot_ext.virt import image_store

IMAGE = '4b8c9a8e-1111-4e3e-9c59-0a3d0c8b7d11'


class _Glance:
    """Nova's image API answering from a script of statuses.

    None: Glance does not answer.
    """

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.deleted = []

    def _next(self):
        status = self.statuses.pop(0) if len(self.statuses) > 1 \
            else self.statuses[0]
        if status is None:
            raise nova_exc.GlanceConnectionFailed(server='glance',
                                                  reason='refused')
        if status == 'gone':
            raise nova_exc.ImageNotFound(image_id=IMAGE)
        return status

    def get(self, context, image_id):
        return {'id': image_id, 'status': self._next()}

    def delete(self, context, image_id):
        self.deleted.append(image_id)


class _Clock:
    def __init__(self):
        self.now = 0.0

    def sleep(self, seconds):
        self.now += seconds

    def __call__(self):
        return self.now


def _run(glance, give_up_after=60):
    clock = _Clock()
    return image_store.delete_when_glance_answers(
        glance, None, IMAGE, interval=5, give_up_after=give_up_after,
        sleep=clock.sleep, clock=clock), clock.now


def test_queued_record_is_deleted_once_glance_answers():
    glance = _Glance([None, None, 'queued'])
    result, waited = _run(glance)
    assert (result, glance.deleted, waited) == ('deleted', [IMAGE], 15)


def test_saving_record_is_deleted_too():
    glance = _Glance(['saving'])
    assert _run(glance)[0] == 'deleted' and glance.deleted == [IMAGE]


def test_active_image_is_never_deleted():
    glance = _Glance([None, 'active'])
    assert _run(glance)[0] == 'kept' and glance.deleted == []


def test_record_deleted_by_someone_else():
    glance = _Glance([None, 'gone'])
    assert _run(glance)[0] == 'gone' and glance.deleted == []


def test_glance_away_for_good_gives_up_in_time():
    glance = _Glance([None])
    result, waited = _run(glance, give_up_after=60)
    assert result == 'gave up' and glance.deleted == []
    assert 60 <= waited <= 65
