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

"""A flatten of a directory store image cut short by a crash is finished
or dropped, never half applied. (The flatten itself runs on real images
in tests/functional/test_incremental.py.)
"""

import json
import uuid

from nova_snapshot_ext.stores import file as file_store


def image_dir(tmp_path, *flat):
    image_id = str(uuid.uuid4())
    d = tmp_path / image_id
    d.mkdir()
    (d / 'image.qcow2').write_text('incremental')
    (d / 'metadata.json').write_text(json.dumps({'incremental_of': 'p'}))
    if 'image' in flat:
        (d / 'image.qcow2.flat').write_text('half written')
    if 'metadata' in flat:
        (d / 'metadata.json.flat').write_text(
            json.dumps({'incremental_of': None}))
    return image_id, d


def store(conf, tmp_path):
    return file_store.FileStore(conf, 'file://%s' % tmp_path)


def test_a_copy_not_renamed_is_dropped(conf, tmp_path):
    image_id, d = image_dir(tmp_path, 'image', 'metadata')
    store(conf, tmp_path).finish_flatten(image_id)
    assert sorted(p.name for p in d.iterdir()) == ['image.qcow2',
                                                   'metadata.json']
    assert (d / 'image.qcow2').read_text() == 'incremental'
    assert json.loads((d / 'metadata.json').read_text()) == {
        'incremental_of': 'p'}


def test_a_renamed_copy_gets_its_metadata(conf, tmp_path):
    image_id, d = image_dir(tmp_path, 'metadata')
    store(conf, tmp_path).finish_flatten(image_id)
    assert sorted(p.name for p in d.iterdir()) == ['image.qcow2',
                                                   'metadata.json']
    assert json.loads((d / 'metadata.json').read_text()) == {
        'incremental_of': None}


def test_nothing_to_finish(conf, tmp_path):
    image_id, d = image_dir(tmp_path)
    store(conf, tmp_path).finish_flatten(image_id)
    assert sorted(p.name for p in d.iterdir()) == ['image.qcow2',
                                                   'metadata.json']
