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

"""gc's sweep of queued Glance records, and its command line."""

from unittest import mock

import pytest

from nova_snapshot_ext.cleanup import sweep
from nova_snapshot_ext.cmd import main
from nova_snapshot_ext.stores import glance as glance_store


class _Claims:
    records: set = set()
    paths: set = set()


def test_a_hostile_image_name_cannot_forge_output_lines():
    api = mock.create_autospec(glance_store.GlanceAPI, instance=True)
    api.queued_of_ours.return_value = [{
        'id': 'abc', 'created_at': '2000-01-01T00:00:00Z',
        'name': 'x\ndelete image record glance image 123 \x1b[2K(ok)'}]
    store = mock.Mock(queued_of_ours=api.queued_of_ours)
    store.__str__ = lambda self: 'glance'
    (finding,) = sweep.records(store, 60, _Claims())
    target = finding.target
    assert target.startswith('glance image abc (')
    assert '\n' not in target and '\x1b' not in target
    assert '\\n' in target and '\\x1b' in target


@pytest.mark.parametrize('age', ['-1', 'nan', 'inf', 'soon'])
def test_gc_refuses_a_min_age_that_is_no_age(capsys, age):
    with pytest.raises(SystemExit) as e:
        main.build_parser().parse_args(['gc', '--min-age', age])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert '(0 or more)' in err


def test_gc_takes_a_min_age_of_zero():
    args = main.build_parser().parse_args(['gc', '--min-age', '0'])
    assert args.min_age == 0
