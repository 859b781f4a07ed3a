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

"""Tests with real Nova in-process: its API, conductor, scheduler and
compute manager, from its own functional-test fixtures.

NOTE: importing nova.tests.functional applies Nova's eventlet monkey
patching, which must come before anything else is imported.
"""

import nova.tests.functional  # noqa: F401
