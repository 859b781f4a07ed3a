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

"""Fixtures of the unit tests."""

from oslo_config import cfg
import pytest

from nova_snapshot_ext import conf as nse_conf


@pytest.fixture
def conf(tmp_path):
    """Every option registered, defaults only, state under tmp_path."""
    c = cfg.ConfigOpts()
    nse_conf.register_opts(c)
    c([], default_config_files=[], default_config_dirs=[])
    c.set_override('state_path', str(tmp_path))
    return c
