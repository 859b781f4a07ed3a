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

"""The README's main job: snapshot a running guest live and cold.

Run through ``tools/demo.sh``, which brings the stack up first. It boots
the counter-writing test guest, runs ``nova-snapshot-ext check`` and four
``nova-snapshot-ext snapshot`` commands (live, then cold) into a directory
store and into the stack's Glance, checks that each image is one
consistent point in time, and prints the results and the Glance image ids.
Then it boots a guest whose disk is in Ceph and takes two direct snapshots
into the Glance that shares the cluster (flatten inline, then deferred),
and runs ``nova-snapshot-ext gc``.
"""

import json
import os
import shutil
import subprocess
import sys

import libvirt

from tests.functional import ceph_stack
from tests.functional import glance_stack
from tests.functional import guest as guest_mod

DEMO = 'demo'


def cli(conf_file: str, *args: str) -> str:
    cmd = ['nova-snapshot-ext', '--config-file', conf_file, *args]
    print('$ ' + ' '.join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    sys.stderr.write(done.stderr)
    if done.returncode:
        raise SystemExit('demo: the command failed (exit %d)' %
                         done.returncode)
    return done.stdout


def main() -> int:
    root = os.path.join(guest_mod.stack_dir(), 'demo')
    images = os.path.join(root, 'images')
    os.makedirs(images, exist_ok=True)
    os.chmod(root, 0o755)
    conf_file = os.path.join(root, 'nova-snapshot-ext.conf')
    with open(conf_file, 'w') as f:
        f.write('[DEFAULT]\nstate_path = %s\n\n[snapshot_file_store]\n'
                'directory = %s\n' % (os.path.join(root, 'state'), images))
    conn = guest_mod.connect()
    data_mb = int(os.environ.get('DATA_MB', '256'))
    print('demo: booting the test guest (%d MiB of data on its disk)' %
          data_mb, flush=True)
    guest = guest_mod.TestGuest(conn, os.path.join(root, 'guest'), DEMO,
                                data_mb=data_mb)
    try:
        boot = guest.start()
        print('demo: %s is running (booted in %.1f s), writing its counter'
              % (guest.name, boot), flush=True)
        print(cli(conf_file, 'check', guest.name), end='')
        glance_url = glance_stack.endpoint()
        glance_ids = []
        for store in ('file', 'glance+' + glance_url):
            for method in ('live', 'cold'):
                out = cli(conf_file, 'snapshot', guest.name, '--name',
                          'demo-%s' % method, '--method', method,
                          '--store', store, '--json')
                result = json.loads(out)
                print(json.dumps(result, indent=2, sort_keys=True))
                path = result['image']
                if store != 'file':
                    glance_ids.append(result['image'])
                    path = os.path.join(root, 'download')
                    glance_stack.download(glance_url, result['image'], path)
                try:
                    check = guest_mod.check_image(path, result['format'],
                                                  guest.disks.size)
                finally:
                    if store != 'file':
                        os.unlink(path)
                same = check.data_sha256 == guest.disks.data_sha256
                print('demo: %s image in %s: data %s, counter region one '
                      'point in time: %s (last counter %d), guest still '
                      'running: %s' % (
                          method, store.split('+')[0],
                          'identical' if same else 'DIFFERENT',
                          'yes' if check.point_in_time else 'NO',
                          check.last,
                          'yes' if guest.state() ==
                          libvirt.VIR_DOMAIN_RUNNING else 'NO'), flush=True)
                if not check.point_in_time or not same:
                    return 1
        print('$ openstack --os-auth-type none --os-endpoint %s image list'
              % glance_url)
        print(glance_stack.openstack(glance_url, 'image', 'list'), end='')
        print('demo: Glance image ids: %s' % ', '.join(glance_ids))
        print('demo: directory images are in %s' % images)
        return rbd_demo(conn, root)
    finally:
        guest.remove()
        shutil.rmtree(os.path.join(root, 'guest'), ignore_errors=True)
        conn.close()


def rbd_demo(conn: libvirt.virConnect, root: str) -> int:
    """Direct snapshots of a guest on RBD into the Ceph-backed Glance,
    inline then deferred flatten, and gc.
    """
    conf_file = os.path.join(root, 'nova-snapshot-ext-rbd.conf')
    with open(conf_file, 'w') as f:
        f.write('[DEFAULT]\nstate_path = %s\n\n[snapshot_rbd]\n'
                'ceph_conf = %s\n' % (os.path.join(root, 'state'),
                                      ceph_stack.ceph_conf()))
    glance_url = glance_stack.endpoint('ceph')
    data_mb = int(os.environ.get('RBD_DATA_MB', '64'))
    print('demo: booting a guest whose disk is in Ceph (vms pool, %d MiB '
          'of data)' % data_mb, flush=True)
    guest = guest_mod.TestGuest(
        conn, os.path.join(root, 'rbd-guest'), 'demo-rbd', fmt='raw',
        data_mb=data_mb,
        disks=lambda d, n: ceph_stack.import_disk(conn, d, 'vms', n))
    ids = []
    try:
        guest.start()
        for flatten in ('inline', 'deferred'):
            with open(conf_file, 'a') as f:
                f.write('flatten = %s\n' % flatten)
            result = json.loads(cli(
                conf_file, 'snapshot', guest.name, '--name',
                'demo-rbd-%s' % flatten, '--store', 'glance+' + glance_url,
                '--json'))
            print(json.dumps(result, indent=2, sort_keys=True))
            ids.append(result['image'])
            path = os.path.join(root, 'download')
            glance_stack.download(glance_url, result['image'], path)
            try:
                check = guest_mod.check_image(path, 'raw', guest.disks.size)
            finally:
                os.unlink(path)
            ok = (check.point_in_time and
                  check.data_sha256 == guest.disks.data_sha256)
            print('demo: %s snapshot (flatten %s), image %s in Glance at '
                  '%s: data identical and one point in time: %s' % (
                      result['method'], flatten, result['location'],
                      glance_url, 'yes' if ok else 'NO'), flush=True)
            if result['method'] != 'direct' or not ok:
                return 1
        print(cli(conf_file, 'gc', '--dry-run', '--store',
                  'glance+' + glance_url), end='')
        print(cli(conf_file, 'gc', '--store', 'glance+' + glance_url),
              end='')
        print(guest_mod.run('rbd', '-c', ceph_stack.ceph_conf(), 'ls', '-l',
                            'images'), end='')
        print('demo: Glance image ids (direct): %s' % ', '.join(ids))
        return 0
    finally:
        guest.remove()
        ceph_stack.remove_disk(guest.disks.path)
        shutil.rmtree(os.path.join(root, 'rbd-guest'), ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
