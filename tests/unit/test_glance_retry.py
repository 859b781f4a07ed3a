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

"""Requests to Glance tried again, and the upload never: the faults a
real Glance cannot be made to show on cue (a 503 from a proxy, an answer
lost after the record was made). Restarted and frozen Glances are in
tests/functional/test_glance_faults.py.
"""

from unittest import mock

from glanceclient import exc as glance_exc
from keystoneauth1 import exceptions as ksa_exc
import pytest

from nova_snapshot_ext import exception
from nova_snapshot_ext import retry
from nova_snapshot_ext.stores import base

IMAGE_ID = '0f6c8e2e-4bd8-4c1f-9d4b-1d8f1c3c0a11'


@pytest.fixture
def pauses():
    slept = []
    with mock.patch.object(retry, 'sleep', slept.append):
        yield slept


@pytest.fixture
def api(conf):
    store = base.load(conf, 'glance+http://127.0.0.1:9292')
    store.api._client = mock.Mock()
    return store.api


def unavailable():
    return glance_exc.HTTPServiceUnavailable('503 Service Unavailable')


def test_defaults(conf):
    group = conf.snapshot_glance
    assert (group.timeout, group.request_attempts, group.retry_interval,
            group.connect_retries) == (60, 4, 1.0, 0)


def test_5xx_and_connection_errors_are_tried_again(api, pauses):
    api._client.images.get.side_effect = [
        unavailable(), glance_exc.CommunicationError('refused'),
        glance_exc.HTTPInternalServerError('500'), {'id': IMAGE_ID}]
    assert api.get(IMAGE_ID) == {'id': IMAGE_ID}
    assert api._client.images.get.call_count == 4
    # Pauses double from retry_interval.
    assert pauses == [1.0, 2.0, 4.0]


def test_it_gives_up_after_request_attempts(conf, api, pauses):
    conf.set_override('request_attempts', 2, group='snapshot_glance')
    api._client.images.update.side_effect = unavailable()
    with pytest.raises(exception.StoreUnavailable) as e:
        api.update(IMAGE_ID, {'name': 'x'})
    assert api._client.images.update.call_count == 2
    assert '503' in str(e.value)
    assert len(pauses) == 1


@pytest.mark.parametrize('error,wanted', [
    (glance_exc.HTTPConflict('409 Conflict'), exception.StoreRejected),
    (glance_exc.HTTPForbidden('403'), exception.StoreAuthFailed),
    (glance_exc.HTTPBadRequest('400 bad name'), exception.StoreWriteFailed),
])
def test_client_errors_are_not_tried_again(api, pauses, error, wanted):
    api._client.images.create.side_effect = error
    with pytest.raises(wanted):
        api.create({'id': IMAGE_ID, 'name': 'n'})
    assert api._client.images.create.call_count == 1
    assert pauses == []


def test_a_record_made_by_a_lost_answer_is_taken(api, pauses):
    """The first create made the record but its answer was lost: the
    second is refused (the id is taken), and the record is the one made.
    """
    made = {'id': IMAGE_ID, 'name': 'n', 'status': 'queued'}
    api._client.images.create.side_effect = [
        glance_exc.CommunicationError('connection reset'),
        glance_exc.HTTPConflict('409 Conflict')]
    api._client.images.get.return_value = made
    assert api.create({'id': IMAGE_ID, 'name': 'n'}) == made
    assert api._client.images.create.call_count == 2


def test_a_conflict_with_someone_elses_record_is_refused(api, pauses):
    api._client.images.create.side_effect = [
        unavailable(), glance_exc.HTTPConflict('409 Conflict')]
    api._client.images.get.return_value = {
        'id': IMAGE_ID, 'name': 'other', 'status': 'active'}
    with pytest.raises(exception.StoreRejected):
        api.create({'id': IMAGE_ID, 'name': 'n'})


def test_the_upload_is_sent_once(api, pauses):
    adapter = mock.Mock()
    adapter.put.side_effect = ksa_exc.ConnectFailure('refused')
    api._adapter = adapter
    with pytest.raises(exception.StoreUnavailable):
        api.upload(IMAGE_ID, mock.Mock(), 'qcow2')
    assert adapter.put.call_count == 1
    assert adapter.put.call_args.kwargs['connect_retries'] == 0
    assert pauses == []


def test_a_location_is_registered_once(api, pauses):
    api._client.images.add_image_location.side_effect = unavailable()
    with pytest.raises(exception.StoreUnavailable):
        api.add_location(IMAGE_ID, 'rbd://f/images/i/snap', None)
    assert api._client.images.add_image_location.call_count == 1
