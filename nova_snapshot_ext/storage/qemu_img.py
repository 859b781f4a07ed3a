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

"""qemu-img, run safely.

* The input format is always given (``-f``): qemu-img never guesses, so a
  guest cannot make its disk be read as something else (OSSA-2016-001).
* ``qemu-img info``, ``check`` and ``convert`` run under CPU-time and
  address-space limits.
* Images with a ``json:`` backing or an external data file are refused:
  they would make qemu-img read what the image names, not the disk.
* Commands run through :func:`oslo_concurrency.processutils.execute`, never
  through a shell.
"""

from collections.abc import Callable
import json
import os
import re
from typing import Any

from oslo_concurrency import processutils
from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext import exception

LOG = logging.getLogger(__name__)

FORMATS = ('qcow2', 'raw')
#: The formats a snapshot image may be written in: Nova's ``[libvirt]
#: snapshot_image_format`` also asks for vmdk and vdi, which only qemu-img
#: convert writes (never read from a guest's disk).
WRITE_FORMATS = FORMATS + ('vmdk', 'vdi')
_PROGRESS = re.compile(rb'\((\d+(?:\.\d+)?)/100%\)')

Progress = Callable[[float], None]


def _check_format(fmt: str | None,
                  formats: tuple[str, ...] = FORMATS) -> str:
    if fmt not in formats:
        raise exception.InvalidFormat(format=fmt, choices=', '.join(formats))
    return fmt


def _source_args(src: str, fmt: str, image_opts: bool,
                 formats: tuple[str, ...] = FORMATS) -> list[str]:
    """How qemu-img is told the source and its format: ``-f FMT`` for a
    file, or ``--image-opts`` whose ``driver`` is the format.
    """
    _check_format(fmt, formats)
    if not image_opts:
        return ['-f', fmt]
    if not src.startswith('driver=%s,' % fmt):
        raise exception.InvalidInput(
            reason='image options %r do not start with driver=%s' % (
                src, fmt))
    return ['--image-opts']


def info(conf: cfg.ConfigOpts, path: str, fmt: str,
         force_share: bool = False,
         image_opts: bool = False) -> dict[str, Any]:
    """``qemu-img info`` of ``path`` read as ``fmt``, as a dict.

    :param force_share: read an image that a running QEMU has open (``-U``);
        only metadata is read, which is safe.
    :param image_opts: ``path`` is QEMU image options starting with
        ``driver=FMT`` (e.g. an RBD image), not a file name.
    :raises UnsafeImage: qemu-img failed or hit its resource limits.
    """
    # NOTE: a vmdk or vdi image is read only as what a snapshot wrote.
    cmd = ['qemu-img', 'info',
           *_source_args(path, fmt, image_opts, WRITE_FORMATS),
           '--output=json']
    if force_share:
        cmd.append('-U')
    cmd.append(path)
    limits = _limits(conf.snapshot_qemu_img.info_cpu_time_limit,
                     conf.snapshot_qemu_img.info_address_space_limit)
    try:
        out, _err = processutils.execute(*cmd, prlimit=limits)
    except processutils.ProcessExecutionError as e:
        raise exception.UnsafeImage(path=path, reason=_stderr(e))
    data = json.loads(out)
    reason = _unsafe(data)
    if reason:
        raise exception.UnsafeImage(path=path, reason=reason)
    return data


#: ``qemu-img check`` exit statuses that carry a report: 0 clean, 2
#: corrupted, 3 leaked clusters only.
_CHECK_REPORTS = (0, 2, 3)


def check(conf: cfg.ConfigOpts, path: str, fmt: str) -> dict[str, Any]:
    """``qemu-img check`` of ``path`` read as ``fmt``, as a dict (with
    ``corruptions``, ``leaks``, ``check-errors`` counts).

    Runs under the limits of ``info``: the image is metadata qemu-img
    parses, and may come from anywhere.

    :raises UnsafeImage: qemu-img could not check the image (failed, or
        hit its resource limits).
    """
    cmd = ['qemu-img', 'check', '-f', _check_format(fmt), '--output=json',
           path]
    limits = _limits(conf.snapshot_qemu_img.info_cpu_time_limit,
                     conf.snapshot_qemu_img.info_address_space_limit)
    try:
        # NOTE: a damaged image is a report (status 2 or 3), not a
        # failure of qemu-img.
        out, _err = processutils.execute(
            *cmd, prlimit=limits, check_exit_code=list(_CHECK_REPORTS))
    except processutils.ProcessExecutionError as e:
        raise exception.UnsafeImage(path=path, reason=_stderr(e))
    try:
        return json.loads(out)
    except ValueError:
        raise exception.UnsafeImage(
            path=path, reason='qemu-img check printed no report')


def _limits(cpu_seconds: int, address_space_mib: int
            ) -> processutils.ProcessLimits:
    """prlimit's limits; 0 is no limit."""
    return processutils.ProcessLimits(
        cpu_time=cpu_seconds or None,
        address_space=address_space_mib * 1024 * 1024 or None)


def _unsafe(data: dict[str, Any]) -> str | None:
    """Why an image that ``qemu-img info`` described must not be read,
    or None.
    """
    backing = data.get('full-backing-filename') or data.get('backing-filename')
    if backing and not data.get('backing-filename-format'):
        # NOTE: without a recorded backing format qemu-img would probe the
        # backing file's format, which is exactly the guess we refuse.
        return ('its backing file %s has no recorded format (rebase it '
                'with -F)' % backing)
    if backing and backing.startswith('json:'):
        # NOTE: a json: backing names any driver and any file (or
        # network source); only a plain path is followed.
        return 'its backing file is given as json: options, not a path'
    specific = (data.get('format-specific') or {}).get('data') or {}
    if specific.get('data-file'):
        # NOTE: the guest's data would be read from a file the image
        # names, which may be anything on the host.
        return ('it keeps its data in an external data file (%s)' %
                specific['data-file'])
    return None


def backing_of(data: dict[str, Any]) -> tuple[str, str] | None:
    """The (path, format) of an image's backing file, if it has one."""
    backing = data.get('full-backing-filename') or data.get('backing-filename')
    if not backing:
        return None
    return backing, data['backing-filename-format']


def create_qcow2(path: str, size: int,
                 backing: tuple[str, str] | None = None) -> None:
    """Create an empty qcow2 image, optionally over a backing file."""
    cmd = ['qemu-img', 'create', '-q', '-f', 'qcow2']
    if backing:
        cmd += ['-b', backing[0], '-F', _check_format(backing[1])]
    cmd += [path, str(size)]
    try:
        processutils.execute(*cmd)
    except processutils.ProcessExecutionError as e:
        raise exception.ConversionFailed(reason=_stderr(e))


def commit(overlay: str) -> None:
    """Write the qcow2 ``overlay`` into its backing file (``qemu-img
    commit``), e.g. an overlay a guest no longer runs on.
    """
    try:
        processutils.execute('qemu-img', 'commit', '-q', '-f', 'qcow2',
                             overlay)
    except processutils.ProcessExecutionError as e:
        raise exception.ConversionFailed(reason=_stderr(e))


def convert_cmd(conf: cfg.ConfigOpts, src: str, src_fmt: str, dst: str,
                dst_fmt: str, compress: bool = False,
                image_opts: bool = False, rate_mib: int = 0,
                force_share: bool = False) -> list[str]:
    """The ``qemu-img convert`` command line for a snapshot image.

    :param rate_mib: read at most this many MiB/s (0: no limit).
    :param force_share: read ``src`` although a QEMU holds it open for
        writing (``-U``); only for a source that nothing writes meanwhile.
    """
    cmd = ['qemu-img', 'convert', '-p',
           *_source_args(src, src_fmt, image_opts),
           '-O', _check_format(dst_fmt, WRITE_FORMATS),
           '-m', str(conf.snapshot_qemu_img.convert_coroutines), '-W']
    if compress and dst_fmt == 'qcow2':
        cmd.append('-c')
    if rate_mib:
        cmd += ['-r', '%dM' % rate_mib]
    if force_share:
        cmd.append('-U')
    cmd += [src, dst]
    return cmd


def convert(conf: cfg.ConfigOpts, src: str, src_fmt: str, dst: str,
            dst_fmt: str, compress: bool = False,
            progress: Progress | None = None,
            image_opts: bool = False, rate_mib: int = 0,
            force_share: bool = False) -> None:
    """Write ``src`` (with its backing chain) as a standalone image.

    :param progress: called with the fraction done, 0.0 to 1.0, as qemu-img
        reports it.
    :param image_opts: ``src`` is QEMU image options (see :func:`info`).
    :param force_share: see :func:`convert_cmd`.
    :raises ConversionFailed: qemu-img failed or was killed; ``dst`` may
        hold a partial image, which the caller removes.
    """
    cmd = convert_cmd(conf, src, src_fmt, dst, dst_fmt, compress,
                      image_opts, rate_mib, force_share)

    def follow(proc: Any) -> None:
        # NOTE: processutils calls this right after starting qemu-img and
        # before it collects the output, so reading the progress here
        # leaves nothing for communicate() but the exit status.
        try:
            _read_progress(proc.stdout.fileno(), progress)
        except BaseException:
            # NOTE: the progress callback stopped the snapshot (it was
            # cancelled): qemu-img must not go on writing.
            proc.kill()
            proc.communicate()
            raise

    LOG.debug('Converting %(src)s (%(sf)s) to %(dst)s (%(df)s)',
              {'src': src, 'sf': src_fmt, 'dst': dst, 'df': dst_fmt})
    limits = _limits(conf.snapshot_qemu_img.convert_cpu_time_limit,
                     conf.snapshot_qemu_img.convert_address_space_limit)
    try:
        processutils.execute(*cmd, on_execute=follow, prlimit=limits)
    except processutils.ProcessExecutionError as e:
        raise exception.ConversionFailed(reason=_stderr(e))


def _read_progress(fd: int, progress: Progress | None) -> None:
    buf = b''
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return
        buf = (buf + chunk)[-256:]
        found = _PROGRESS.findall(buf)
        if found and progress is not None:
            progress(min(float(found[-1]) / 100.0, 1.0))
        if b'\r' in buf:
            buf = buf[buf.rindex(b'\r') + 1:]


def _stderr(error: processutils.ProcessExecutionError) -> str:
    text = (error.stderr or '').strip()
    if not text:
        code = error.exit_code
        if isinstance(code, int) and code < 0:
            return 'qemu-img was killed by signal %d' % -code
        return 'qemu-img exited with status %s' % code
    return text.splitlines()[-1]
