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

"""The tests' one way to wait."""

import pytest

from tests import polling


def test_returns_the_first_true_value():
    values = iter([0, None, 'ready'])
    slept = []
    assert polling.wait_until(lambda: next(values), 10, 0.5,
                              sleep=slept.append) == 'ready'
    assert slept == [0.5, 0.5]


def test_fails_with_the_message_and_the_last_value():
    with pytest.raises(AssertionError, match=r"^it never came \(waited "
                                             r"0 s; last value: \[\]\)$"):
        polling.wait_until(list, 0, message='it never came')


def test_a_message_function_is_called_on_failure_only():
    said = []

    def message():
        said.append(True)
        return 'log: empty'

    assert polling.wait_until(lambda: 1, 0, message=message) == 1
    assert not said
    with pytest.raises(AssertionError, match='log: empty'):
        polling.wait_until(lambda: 0, 0, message=message)
