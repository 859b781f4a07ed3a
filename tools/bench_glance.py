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

"""How fast is an upload into Glance, next to ``openstack image create``?

Run it from the top of the repository, as root, on the real stack
(``tools/stack.sh up``: the benchmark uses its Glance)::

    python -m tools.bench_glance [--sizes 1024] [--repeat 3] [--json F]

A qcow2 image holding that many MiB of random data (what a snapshot of a
guest with that much data is) is uploaded into the stack's Glance by two
commands, ``--repeat`` times each, alternating, and the medians are
reported:

* **openstack image create --file**: python-openstackclient, what an
  operator types (``--os-auth-type none --os-endpoint URL``);
* **ours**: the ``glance`` store in a fresh process, as the
  ``nova-snapshot-ext`` command runs it: record, streamed upload while
  computing sha256 and sha512, wait for ``active``, hash check.

Both run as separate processes, so both wall times include interpreter
start-up; ours is also reported without it (the store's own time). The
peak memory (VmHWM) of each process is taken from ``wait4()``. Every
image is deleted right after its measurement. The image file is read from
a warm page cache by both.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from tests.functional import glance_stack
from tests.functional import guest as guest_mod
from tools import bench_runner as runner

OSC = 'openstack image create --file'
OURS = 'ours (glance store)'
OURS_STORE = 'ours, store time only'

#: Uploads from a fresh process: the store, with its own clock.
OURS_SCRIPT = '''
import json, os, sys, time
from oslo_config import cfg
from nova_snapshot_ext import conf as nse_conf
from nova_snapshot_ext.stores import base
conf = cfg.ConfigOpts()
nse_conf.register_opts(conf)
conf([], default_config_files=[], default_config_dirs=[])
url, image, workdir = sys.argv[1:4]
started = time.monotonic()
store = base.load(conf, 'glance+' + url)
store.check()
with store.begin(base.ImageMeta(name='bench-ours', disk_format='qcow2'),
                 workdir=workdir) as pending:
    os.unlink(pending.path)
    os.link(image, pending.path)
    stored = pending.commit()
print(json.dumps({'id': stored.id, 'seconds': time.monotonic() - started,
                  'size': stored.size}))
'''


def run_wait4(cmd: list[str]) -> tuple[str, float, int]:
    """Run ``cmd``: its stdout, wall seconds and peak RSS in KiB."""
    with tempfile.TemporaryFile('w+') as out, \
            tempfile.TemporaryFile('w+') as err:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        # NOTE: wait4() reaped the child; tell Popen, or it waits again.
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode:
        raise runner.command_failed(cmd, proc.returncode, stdout, stderr)
    return stdout, wall, usage.ru_maxrss


def measure(args, url: str, workdir: str, data_mb: int) -> dict:
    print('preparing a qcow2 image with %d MiB of random data' % data_mb,
          file=sys.stderr, flush=True)
    image = runner.random_qcow2(workdir, data_mb)
    size = os.path.getsize(image)
    run = runner.Runner(args.repeat, '%d MiB, ' % data_mb)

    def upload(row: str, cmd: list[str]) -> dict:
        out, wall, rss = run_wait4(cmd)
        # NOTE: ours prints JSON, openstack the image's id.
        doc = json.loads(out) if row == OURS else {'id': out.strip()}
        client = glance_stack.client(url)
        try:
            found = client.images.get(doc['id'])
            if found['status'] != 'active' or found['size'] != size:
                raise runner.BenchError('%s left image %s %s with %s bytes'
                                        % (row, doc['id'], found['status'],
                                           found['size']))
        finally:
            client.images.delete(doc['id'])
        run.record(row, wall, rss=rss)
        return doc

    def ours() -> None:
        doc = upload(OURS, [sys.executable, '-c', OURS_SCRIPT, url, image,
                            workdir])
        run.record(OURS_STORE, doc['seconds'])

    def warm_up() -> None:
        # NOTE: one unmeasured read warms the page cache for both.
        with open(image, 'rb') as f:
            while f.read(8 * runner.MiB):
                pass

    run.run([('openstack', lambda: upload(OSC, [
        glance_stack.venv_bin('openstack'), '--os-auth-type', 'none',
        '--os-endpoint', url, 'image', 'create', '--disk-format', 'qcow2',
        '--container-format', 'bare', '--private', '--file', image, '-f',
        'value', '-c', 'id', 'bench-osc'])), ('ours', ours)], warm_up)
    mib = size / runner.MiB
    rows = [['variant', 'median s', 'MiB/s', 'ratio', 'peak RSS MiB',
             'min..max s']]
    for row, values in run.samples.items():
        peak = run.extra(row, 'rss', max) / 1024 if row in run.extras else 0
        rows.append([row, '%.2f' % run.median(row),
                     '%.1f' % (mib / run.median(row)),
                     '%.2f' % run.ratio(row, OSC), '%.0f' % peak if peak
                     else '-', '%.2f..%.2f' % (min(values), max(values))])
    print('\n'.join([
        'nova-snapshot-ext Glance upload benchmark: a %.0f MiB qcow2 '
        'image (%d MiB of random data)' % (mib, data_mb),
        'Glance: %s (Glance 33 under uWSGI, file store, SQLite, no '
        'Keystone), on this host; client and server share its %d cores'
        % (url, os.cpu_count() or 0),
        'method: %d runs of each, alternating; median reported; each run '
        'is a fresh process; MiB/s = image MiB / seconds; ratio = '
        'seconds / openstack' % args.repeat, ''] + runner.table(rows)),
        flush=True)
    return {'image_bytes': size, 'data_mb': data_mb, 'rows': {
        row: dict(figures, mib_per_s=round(mib / run.median(row), 1),
                  ratio=round(run.ratio(row, OSC), 3),
                  peak_rss_kib=run.extra(row, 'rss', max)
                  if row in run.extras else None)
        for row, figures in run.figures().items()}}


def measure_all(args) -> None:
    # NOTE: not tools.bench's helper: the peak RSS of a child counts
    # this process's, from before its exec; what it imports, it weighs.
    try:
        url = glance_stack.endpoint('main')
    except guest_mod.StackMissing as e:
        raise runner.BenchError(str(e))
    sizes = []
    for data_mb in args.sizes:
        workdir = tempfile.mkdtemp(prefix='bench-glance-',
                                   dir=guest_mod.work_root())
        try:
            sizes.append(measure(args, url, workdir, data_mb))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    runner.write_json(args.json, {'repeat': args.repeat, 'sizes': sizes})


def main(argv: list[str] | None = None) -> int:
    args = runner.options(
        'python -m tools.bench_glance', 'Benchmark the upload of a '
        'snapshot image into Glance against openstack image create '
        '--file.', argv, [1024])
    return runner.main(lambda: measure_all(args))


if __name__ == '__main__':
    sys.exit(main())
