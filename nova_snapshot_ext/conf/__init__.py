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

"""All options of nova-snapshot-ext, registered on one ConfigOpts."""

from typing import Any

from oslo_concurrency import opts as concurrency_opts
from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext.conf import file_store
from nova_snapshot_ext.conf import glance
from nova_snapshot_ext.conf import libvirt
from nova_snapshot_ext.conf import qemu_img
from nova_snapshot_ext.conf import rbd
from nova_snapshot_ext.conf import snapshot
from nova_snapshot_ext.conf import workarounds

# NOTE: a ConfigOpts of its own for the command line. Inside nova-compute
# the options are registered on Nova's own CONF instead (see
# register_opts); their groups are the project's own, so they never clash
# with Nova's.
CONF = cfg.ConfigOpts()

MODULES = (snapshot, libvirt, workarounds, qemu_img, file_store, glance,
           rbd)


def register_opts(conf: cfg.ConfigOpts, host_service: bool = False) -> None:
    """Register every option of the project on ``conf``.

    Safe to call more than once.

    :param host_service: ``conf`` is the configuration of the service the
        engine runs in (nova-compute), which has ``[DEFAULT] state_path``
        and ``[oslo_concurrency]`` of its own, with the same meaning:
        those are left as the service registered them.
    """
    for module in MODULES:
        if hasattr(module, 'register_opts'):
            module.register_opts(conf)
            continue
        for group, opts in module.list_opts().items():
            if group == 'DEFAULT':
                if not host_service:
                    conf.register_opts(opts)
                continue
            # NOTE: ConfigOpts keeps overrides inside the OptGroup it is
            # given and copies groups only shallowly: a module-level
            # OptGroup registered on two ConfigOpts would make them share
            # overrides, so each gets a fresh one.
            conf.register_group(cfg.OptGroup(group.name, title=group.title,
                                             help=group.help))
            conf.register_opts(opts, group=group.name)
    if host_service:
        return
    for group, opts in concurrency_opts.list_opts():
        conf.register_opts(opts, group=group)
    conf.set_default('lock_path', '$state_path/locks',
                     group='oslo_concurrency')


def default_of(group: str, name: str) -> Any:
    """The default of the project's option ``name`` of ``group``, as
    declared (before any ``set_default``).
    """
    for module in MODULES:
        for opt_group, opts in module.list_opts().items():
            group_name = getattr(opt_group, 'name', opt_group)
            for opt in opts:
                if group_name == group and opt.dest == name:
                    return opt.default
    raise KeyError('%s.%s' % (group, name))


register_opts(CONF)
logging.register_options(CONF)
