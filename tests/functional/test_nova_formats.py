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

"""vmdk and vdi images, which Nova's ``[libvirt] snapshot_image_format``
asks for (the Nova driver puts them in the request): written by
``qemu-img convert`` from the backup job's export, the mirror's delta or
the disk itself, and as good as a qcow2 image.
"""

import pytest

from tests.functional import guest as guest_mod
from tests.functional import test_snapshot as common


@pytest.mark.parametrize('fmt', ['vmdk', 'vdi'])
@pytest.mark.parametrize('method,style', [('live', 'backup'),
                                          ('live', 'blockcopy'),
                                          ('cold', None)])
def test_vmdk_and_vdi_images(conf, qcow2_guest, fmt, method, style):
    if style:
        conf.set_override('live_copy_style', style,
                          group='snapshot_libvirt')
    # NOTE: compression is qcow2's; it does not apply to these.
    conf.set_override('compress', True, group='snapshot')
    before = common.GuestBefore(qcow2_guest)
    result = common.take(conf, qcow2_guest, method=method,
                         image_format=fmt)
    assert result.method == method
    assert result.live_copy_style == style
    assert result.image.endswith('image.%s' % fmt)
    guest_mod.run('qemu-img', 'check', '-f', fmt, result.image)
    assert guest_mod.image_info(result.image, fmt)['format'] == fmt
    common.assert_good_image(result, qcow2_guest, conf, fmt=fmt)
    common.assert_guest_as_before(qcow2_guest, before)
