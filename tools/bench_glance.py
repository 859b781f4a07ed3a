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

    python -m tools.bench_glance [--data-mb 1024] [--repeat 3] [--json F]

A qcow2 image holding ``--data-mb`` MiB of random data (what a snapshot
of a guest with that much data is) is uploaded into the stack's Glance by
two commands, ``--repeat`` times each, alternating, and the medians are
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

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from oslo_config import cfg

from nova_snapshot_ext.stores import base as store_base
from tests.functional import glance_stack
from tests.functional import guest as guest_mod
from tools import bench_common as common

BenchError = common.BenchError

MiB = 1024 * 1024

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
        raise common.command_failed(cmd, proc.returncode, stdout, stderr)
    return stdout, wall, usage.ru_maxrss


def make_image(workdir: str, data_mb: int) -> str:
    raw = os.path.join(workdir, 'data.raw')
    with open(raw, 'wb') as f:
        for _ in range(data_mb):
            f.write(os.urandom(MiB))
    image = os.path.join(workdir, 'snapshot.qcow2')
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw,
                    image], check=True)
    os.unlink(raw)
    return image


def upload_alone(conf: cfg.ConfigOpts, url: str, path: str, fmt: str,
                 name: str, workdir: str) -> tuple[float, int]:
    """Seconds for the Glance store to upload the image file ``path`` in
    this process, as a snapshot's upload does (store loaded and checked,
    record, upload while hashing, wait for active, check), and the size
    stored. The image is deleted afterwards.
    """
    started = time.monotonic()
    store = store_base.load(conf, 'glance+' + url)
    store.check()
    meta = store_base.ImageMeta(name=name, disk_format=fmt)
    with store.begin(meta, workdir=workdir) as pending:
        # NOTE: the store made the file empty on first use of its path.
        os.unlink(pending.path)
        os.link(path, pending.path)
        stored = pending.commit()
    seconds = time.monotonic() - started
    glance_stack.delete(url, stored.id)
    return seconds, stored.size


def delete_named(url: str, name: str) -> None:
    """Delete every image called ``name`` (what a failure left)."""
    for image in glance_stack.client(url).images.list(
            filters={'name': name}):
        glance_stack.delete(url, image['id'])


class Bench:

    def __init__(self, args: argparse.Namespace, url: str, image: str,
                 workdir: str) -> None:
        self.args = args
        self.url = url
        self.image = image
        self.workdir = workdir
        self.samples: dict[str, list[float]] = {OSC: [], OURS: [],
                                                OURS_STORE: []}
        self.rss: dict[str, list[int]] = {OSC: [], OURS: []}
        self.size = os.path.getsize(image)

    def delete(self, image_id: str) -> None:
        glance_stack.client(self.url).images.delete(image_id)

    def check(self, what: str, image_id: str) -> None:
        image = glance_stack.client(self.url).images.get(image_id)
        if image['status'] != 'active' or image['size'] != self.size:
            raise BenchError('%s left image %s %s with %s bytes' % (
                what, image_id, image['status'], image['size']))

    def osc(self) -> None:
        out, wall, rss = run_wait4([
            glance_stack.venv_bin('openstack'), '--os-auth-type', 'none',
            '--os-endpoint', self.url, 'image', 'create', '--disk-format',
            'qcow2', '--container-format', 'bare', '--private', '--file',
            self.image, '-f', 'value', '-c', 'id', 'bench-osc'])
        image_id = out.strip()
        try:
            self.check('openstack image create', image_id)
        finally:
            self.delete(image_id)
        self.samples[OSC].append(wall)
        self.rss[OSC].append(rss)

    def ours(self) -> None:
        out, wall, rss = run_wait4([
            sys.executable, '-c', OURS_SCRIPT, self.url, self.image,
            self.workdir])
        doc = json.loads(out)
        try:
            self.check('ours', doc['id'])
        finally:
            self.delete(doc['id'])
        self.samples[OURS].append(wall)
        self.samples[OURS_STORE].append(doc['seconds'])
        self.rss[OURS].append(rss)

    def run(self) -> None:
        # NOTE: one unmeasured read warms the page cache for both.
        with open(self.image, 'rb') as f:
            while f.read(8 * MiB):
                pass
        variants = (('openstack', self.osc), ('ours', self.ours))
        for rep in range(self.args.repeat):
            shift = rep % len(variants)
            for name, measure in variants[shift:] + variants[:shift]:
                print('round %d/%d: %s' % (rep + 1, self.args.repeat, name),
                      file=sys.stderr, flush=True)
                measure()


def report(bench: Bench, args: argparse.Namespace) -> dict:
    mib = bench.size / MiB
    base = statistics.median(bench.samples[OSC])
    lines = [
        'nova-snapshot-ext Glance upload benchmark: a %.0f MiB qcow2 '
        'image (%d MiB of random data)' % (mib, args.data_mb),
        'Glance: %s (Glance 33 under uWSGI, file store, SQLite, no '
        'Keystone), on this host; client and server share its %d cores'
        % (bench.url, os.cpu_count() or 0),
        'method: %d runs of each, alternating; median reported; each run '
        'is a fresh process; MiB/s = image MiB / seconds; ratio = '
        'seconds / openstack' % args.repeat,
        '',
        '%-32s %9s %9s %7s %14s  %s' % ('variant', 'median s', 'MiB/s',
                                        'ratio', 'peak RSS MiB',
                                        'min..max s'),
    ]
    rows = []
    for name, values in bench.samples.items():
        median = statistics.median(values)
        rss = bench.rss.get(name)
        peak = max(rss) / 1024 if rss else None
        lines.append('%-32s %9.2f %9.1f %7.2f %14s  %.2f..%.2f' % (
            name, median, mib / median, median / base,
            '%.0f' % peak if peak else '-', min(values), max(values)))
        rows.append({'name': name, 'seconds': round(median, 3),
                     'mib_per_s': round(mib / median, 1),
                     'ratio': round(median / base, 3),
                     'peak_rss_mib': round(peak, 1) if peak else None,
                     'samples': [round(v, 3) for v in values]})
    print('\n'.join(lines), flush=True)
    return {'image_bytes': bench.size, 'data_mb': args.data_mb,
            'repeat': args.repeat, 'rows': rows}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m tools.bench_glance',
        description='Benchmark the upload of a snapshot image into Glance '
                    'against openstack image create --file.')
    common.add_common_arguments(parser, 'in the image')
    # NOTE: tox -e bench passes the options of tools.bench here too.
    args, others = parser.parse_known_args(argv)
    if others:
        print('bench_glance: ignoring %s (options of tools.bench)' %
              ' '.join(others), file=sys.stderr)
    if args.data_mb < 1 or args.repeat < 1:
        parser.error('--data-mb and --repeat must be at least 1')
    return args


def measure(args: argparse.Namespace) -> None:
    try:
        url = glance_stack.endpoint()
    except guest_mod.StackMissing as e:
        raise BenchError(str(e))
    workdir = tempfile.mkdtemp(prefix='bench-glance-',
                               dir=guest_mod.work_root())
    try:
        print('preparing a qcow2 image with %d MiB of random data' %
              args.data_mb, file=sys.stderr, flush=True)
        image = make_image(workdir, args.data_mb)
        runner = Bench(args, url, image, workdir)
        runner.run()
        figures = report(runner, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    common.write_json(args.json, figures)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return common.run_main(lambda: measure(args))


if __name__ == '__main__':
    sys.exit(main())
