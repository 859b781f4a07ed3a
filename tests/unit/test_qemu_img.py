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

"""qemu-img command building: the input format is never left to guess."""

import os
import threading
import time
from unittest import mock

from oslo_concurrency import processutils
from oslo_config import cfg
import pytest

from nova_snapshot_ext import conf as nse_conf
from nova_snapshot_ext import exception
from nova_snapshot_ext.storage import qemu_img


@pytest.fixture
def conf():
    c = cfg.ConfigOpts()
    nse_conf.register_opts(c)
    c([], default_config_files=[], default_config_dirs=[])
    return c


@pytest.mark.parametrize('src_fmt,dst_fmt,compress,extra', [
    ('qcow2', 'qcow2', False, []),
    ('qcow2', 'qcow2', True, ['-c']),
    ('raw', 'raw', True, []),     # raw cannot be compressed
    ('raw', 'qcow2', False, []),
])
def test_convert_cmd(conf, src_fmt, dst_fmt, compress, extra):
    cmd = qemu_img.convert_cmd(conf, '/s', src_fmt, '/d', dst_fmt, compress)
    assert cmd[:2] == ['qemu-img', 'convert']
    assert cmd[cmd.index('-f') + 1] == src_fmt
    assert cmd[cmd.index('-O') + 1] == dst_fmt
    assert cmd[-2:] == ['/s', '/d']
    assert ('-c' in cmd) == bool(extra)
    assert '-p' in cmd


def test_convert_cmd_rate_limit(conf):
    assert '-r' not in qemu_img.convert_cmd(conf, '/s', 'raw', '/d', 'raw')
    cmd = qemu_img.convert_cmd(conf, '/s', 'raw', '/d', 'raw', rate_mib=300)
    assert cmd[cmd.index('-r') + 1] == '300M'
    assert cmd[-2:] == ['/s', '/d']


@pytest.mark.parametrize('fmt', [None, '', 'vpc', 'qcow2 -o x'])
def test_unknown_formats_are_refused(conf, fmt):
    with pytest.raises(exception.InvalidFormat):
        qemu_img.convert_cmd(conf, '/s', fmt, '/d', 'raw')
    with pytest.raises(exception.InvalidFormat):
        qemu_img.convert_cmd(conf, '/s', 'raw', '/d', fmt)
    with pytest.raises(exception.InvalidFormat):
        qemu_img.info(conf, '/s', fmt)


@pytest.mark.parametrize('fmt', ['vmdk', 'vdi'])
def test_vmdk_and_vdi_are_written_never_read_from_a_disk(conf, fmt):
    # NOTE: Nova's [libvirt] snapshot_image_format asks for them.
    cmd = qemu_img.convert_cmd(conf, '/s', 'qcow2', '/d', fmt, compress=True)
    assert cmd[cmd.index('-O') + 1] == fmt
    assert '-c' not in cmd
    with pytest.raises(exception.InvalidFormat):
        qemu_img.convert_cmd(conf, '/s', fmt, '/d', 'raw')


def test_info_runs_under_prlimit_with_format(conf):
    out = '{"virtual-size": 1048576, "format": "raw"}'
    with mock.patch.object(processutils, 'execute',
                           return_value=(out, '')) as execute:
        data = qemu_img.info(conf, '/img', 'raw', force_share=True)
    assert data['virtual-size'] == 1048576
    args, kwargs = execute.call_args
    assert args[:5] == ('qemu-img', 'info', '-f', 'raw', '--output=json')
    assert '-U' in args
    limits = kwargs['prlimit']
    assert limits.cpu_time == 30
    assert limits.address_space == 1024 * 1024 * 1024
    assert 'shell' not in kwargs


def test_info_refuses_unrecorded_backing_format(conf):
    out = '{"virtual-size": 1, "backing-filename": "/b"}'
    with mock.patch.object(processutils, 'execute', return_value=(out, '')):
        with pytest.raises(exception.UnsafeImage, match='no recorded'):
            qemu_img.info(conf, '/img', 'qcow2')


def test_info_failure_is_one_line(conf):
    err = processutils.ProcessExecutionError(
        stderr='qemu-img: Could not open\nqemu-img: /img: bad magic\n',
        exit_code=1)
    with mock.patch.object(processutils, 'execute', side_effect=err):
        with pytest.raises(exception.UnsafeImage) as e:
            qemu_img.info(conf, '/img', 'qcow2')
    assert '\n' not in str(e.value)
    assert 'bad magic' in str(e.value)


def test_killed_convert_says_so(conf):
    err = processutils.ProcessExecutionError(stderr='', exit_code=-9)
    with mock.patch.object(processutils, 'execute', side_effect=err):
        with pytest.raises(exception.ConversionFailed, match='signal 9'):
            qemu_img.convert(conf, '/s', 'raw', '/d', 'raw')


def test_progress_is_read_as_qemu_img_writes_it():
    seen = []
    r, w = os.pipe()

    def writer():
        for chunk in (b'    (0.00/100%)\r', b'    (12.', b'50/100%)\r',
                      b'    (100.00/100%)\r\n'):
            os.write(w, chunk)
            time.sleep(0.02)  # let the reader see each write on its own
        os.close(w)

    t = threading.Thread(target=writer)
    t.start()
    qemu_img._read_progress(r, seen.append)
    t.join()
    os.close(r)
    assert seen[0] == 0.0
    assert 0.125 in seen
    assert seen[-1] == 1.0
    assert seen == sorted(seen)


def _qemu_img(*args):
    processutils.execute('qemu-img', *args)


def test_info_refuses_a_json_backing(conf, tmp_path):
    base = tmp_path / 'base.raw'
    _qemu_img('create', '-q', '-f', 'raw', str(base), '1M')
    top = tmp_path / 'top.qcow2'
    _qemu_img('create', '-q', '-f', 'qcow2', '-u', '-F', 'raw', '-b',
              'json:{"driver": "file", "filename": "%s"}' % base,
              str(top), '1M')
    with pytest.raises(exception.UnsafeImage, match='json: options'):
        qemu_img.info(conf, str(top), 'qcow2')


def test_info_refuses_an_external_data_file(conf, tmp_path):
    img = tmp_path / 'img.qcow2'
    _qemu_img('create', '-q', '-f', 'qcow2', '-o',
              'data_file=%s' % (tmp_path / 'host-file'), str(img), '1M')
    with pytest.raises(exception.UnsafeImage,
                       match='external data file .*host-file'):
        qemu_img.info(conf, str(img), 'qcow2')


def test_info_takes_a_plain_backing(conf, tmp_path):
    base = tmp_path / 'base.qcow2'
    _qemu_img('create', '-q', '-f', 'qcow2', str(base), '1M')
    top = tmp_path / 'top.qcow2'
    _qemu_img('create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b',
              str(base), str(top))
    data = qemu_img.info(conf, str(top), 'qcow2')
    assert qemu_img.backing_of(data) == (str(base), 'qcow2')


def test_convert_runs_under_prlimit(conf, tmp_path):
    src = tmp_path / 'src.qcow2'
    _qemu_img('create', '-q', '-f', 'qcow2', str(src), '8M')
    processutils.execute('qemu-io', '-f', 'qcow2', '-c', 'write -P 7 0 8M',
                         str(src))
    seen = []
    qemu_img.convert(conf, str(src), 'qcow2', str(tmp_path / 'out.qcow2'),
                     'qcow2', compress=True, progress=seen.append)
    assert seen and seen[-1] == 1.0
    # NOTE: 16 MiB is less than qemu-img needs to start its first thread,
    # so a failure shows that the limit reaches the real process.
    conf.set_override('convert_address_space_limit', 16,
                      group='snapshot_qemu_img')
    with pytest.raises(exception.ConversionFailed) as e:
        qemu_img.convert(conf, str(src), 'qcow2',
                         str(tmp_path / 'out2.qcow2'), 'qcow2')
    assert '\n' not in str(e.value)


def test_convert_limits_come_from_the_options(conf):
    conf.set_override('convert_cpu_time_limit', 600,
                      group='snapshot_qemu_img')
    with mock.patch.object(processutils, 'execute') as execute:
        qemu_img.convert(conf, '/s', 'raw', '/d', 'raw')
    limits = execute.call_args.kwargs['prlimit']
    assert limits.cpu_time == 600
    assert limits.address_space == 8192 * 1024 * 1024
    conf.set_override('convert_address_space_limit', 0,
                      group='snapshot_qemu_img')
    with mock.patch.object(processutils, 'execute') as execute:
        qemu_img.convert(conf, '/s', 'raw', '/d', 'raw')
    assert execute.call_args.kwargs['prlimit'].address_space is None
