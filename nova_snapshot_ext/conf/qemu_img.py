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

"""Limits and tuning of qemu-img ([snapshot_qemu_img])."""

from oslo_config import cfg

qemu_img_group = cfg.OptGroup(
    'snapshot_qemu_img',
    title='qemu-img options',
    help='How qemu-img is run.')

qemu_img_opts = [
    cfg.IntOpt(
        'info_cpu_time_limit',
        deprecated_group='qemu_img',
        default=30,
        min=1,
        help="""
CPU seconds allowed to ``qemu-img info``. A crafted image can make it
spin; the limit stops it.
"""),
    cfg.IntOpt(
        'info_address_space_limit',
        deprecated_group='qemu_img',
        default=1024,
        min=64,
        help='Address space in MiB allowed to ``qemu-img info``.'),
    cfg.IntOpt(
        'convert_address_space_limit',
        default=8192,
        min=0,
        help="""
Address space in MiB allowed to ``qemu-img convert``, which reads what the
guest wrote. QEMU reserves address space for each of its threads, so this
is far above the memory it uses: with ``-c`` and 16 coroutines it reserves
about 1.2 GiB on a 2-core host, more with more cores.

Possible values:

* ``0``: no limit
* a number of MiB, at least the address space conversions need here

Related options:

* ``convert_cpu_time_limit``
"""),
    cfg.IntOpt(
        'convert_cpu_time_limit',
        default=0,
        min=0,
        help="""
CPU seconds allowed to one ``qemu-img convert``. The time a conversion
needs grows with the disk (and with compression), so there is no limit by
default.

Possible values:

* ``0``: no limit
* a number of seconds

Related options:

* ``convert_address_space_limit``
"""),
    cfg.IntOpt(
        'convert_coroutines',
        deprecated_group='qemu_img',
        default=8,
        min=1,
        max=16,
        help="""
Parallel coroutines of ``qemu-img convert`` (``-m``). Together with
out-of-order writes (``-W``) this keeps both disks busy.
"""),
]


def list_opts() -> dict:
    return {qemu_img_group: qemu_img_opts}
