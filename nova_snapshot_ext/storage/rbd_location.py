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

"""How others name an RBD image: Glance as a location URL
(``rbd://fsid/pool/image/snap``, :class:`Location`), QEMU as
``--image-opts`` (:func:`qemu_image_opts`).

Plain names, no Ceph: the rbd backend builds the location it registers
for a direct snapshot, reads the locations of a base image, and has
qemu-img read an RBD snapshot with them.
"""

import dataclasses
import urllib.parse

from oslo_config import cfg

SCHEME = 'rbd://'


@dataclasses.dataclass(frozen=True)
class Location:
    """An RBD snapshot as Glance names it: ``rbd://fsid/pool/image/snap``."""

    fsid: str
    pool: str
    image: str
    snap: str

    @property
    def url(self) -> str:
        return SCHEME + '/'.join(
            urllib.parse.quote(part, safe='')
            for part in (self.fsid, self.pool, self.image, self.snap))

    @classmethod
    def parse(cls, url: str) -> 'Location | None':
        """The location ``url`` names; None unless it is a complete
        four-part ``rbd://`` URL.
        """
        if not url or not url.startswith(SCHEME):
            return None
        parts = [urllib.parse.unquote(p)
                 for p in url[len(SCHEME):].split('/')]
        if len(parts) != 4 or not all(parts):
            return None
        return cls(*parts)


def qemu_image_opts(conf: cfg.ConfigOpts, fmt: str, pool: str, name: str,
                    snap: str | None = None) -> str:
    """QEMU ``--image-opts`` that read an RBD image (or snapshot) of the
    cluster of ``[snapshot_rbd]`` as ``fmt``. The key comes from the
    keyring that ceph.conf names, never from the command line.
    """
    opts = [('driver', fmt), ('file.driver', 'rbd'),
            ('file.pool', pool), ('file.image', name)]
    if snap:
        opts.append(('file.snapshot', snap))
    opts += [('file.user', conf.snapshot_rbd.user),
             ('file.conf', conf.snapshot_rbd.ceph_conf)]
    return ','.join('%s=%s' % (k, str(v).replace(',', ',,'))
                    for k, v in opts)
