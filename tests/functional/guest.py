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

"""The counter-writing test guest, and how to check an image of it.

The guest (built by ``tools/build-guest.sh``) writes ``CTR n`` into sector
``n % 256`` of the last 256 sectors of its disk, one fsync'ed write at a
time, about a hundred a second. An image is one point in time exactly when
its counter region holds ``m-255 .. m``, each in its own slot. The rest of
the disk is random data written on the host before boot, so an image must
hold exactly that data.
"""

from collections.abc import Callable
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

import libvirt

from tests import polling

SECTOR = 512
SLOTS = 256
#: The tail that holds the counter region (the guest writes its last
#: SLOTS sectors); random data fills the disk before it.
TAIL = 1024 * 1024
MiB = 1024 * 1024
PREFIX = 'nse-'

# Errors are asserted or handled here; libvirt need not print them too.
libvirt.registerErrorHandler(lambda ctx, err: None, None)


def stack_dir() -> str:
    return os.environ.get('STACK_DIR', '/var/tmp/nova-snapshot-ext-stack')


def guest_dir() -> str:
    return os.environ.get('GUEST_DIR', os.path.join(stack_dir(), 'guest'))


URI = 'qemu:///system'


class StackMissing(Exception):
    """The real stack is not up."""


def connect() -> libvirt.virConnect:
    """Connect to the stack's libvirtd, checking the test guest is built.

    :raises StackMissing: with what to run.
    """
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as e:
        raise StackMissing('libvirtd is not reachable at %s (%s): run '
                           '"tools/stack.sh up" as root first' % (
                               URI, e.get_error_message() or e))
    gdir = guest_dir()
    for name in ('vmlinuz', 'initrd.gz'):
        if not os.path.exists(os.path.join(gdir, name)):
            conn.close()
            raise StackMissing('the test guest is missing in %s: run '
                               '"tools/stack.sh up"' % gdir)
    return conn


def work_root() -> str:
    """A directory for guest disks that QEMU (not root) can reach."""
    root = os.path.join(stack_dir(), 'work')
    os.makedirs(root, exist_ok=True)
    for path in (stack_dir(), root):
        os.chmod(path, 0o755)
    return root


class CommandFailed(AssertionError):
    """A command failed; the message has its stderr."""


def run(*cmd: str) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise CommandFailed('%s exited with %d:\n%s%s' % (
            ' '.join(cmd), done.returncode, done.stdout, done.stderr))
    return done.stdout


@dataclasses.dataclass
class Disks:
    path: str
    format: str
    size: int
    data_sha256: str
    base: str | None = None
    #: For an RBD disk (``path`` is ``pool/image``): host, port (of the
    #: monitor), secret (libvirt secret UUID) and user.
    rbd: dict | None = None


def _random_file(path: str, size: int, digest) -> None:
    """Write ``size`` random bytes to ``path``, adding them to ``digest``."""
    with open(path, 'wb') as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * MiB))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)


def _hash_zeros(digest, size: int) -> None:
    """Add ``size`` zero bytes to ``digest``."""
    zeros = bytes(min(size, 4 * MiB))
    while size > 0:
        digest.update(zeros[:size])
        size -= len(zeros)


def make_disks(workdir: str, fmt: str, data_mb: int = 64,
               disk_mb: int | None = None) -> Disks:
    """A disk of ``data_mb`` MiB random data plus the counter tail.

    ``qcow2``: base.raw holds the first half of the data, the qcow2
    overlay disk.qcow2 (backed by it) the second half. ``raw``: one raw
    file.

    :param disk_mb: the disk's virtual size in MiB when larger than the
        data and the tail: a sparse hole (zeros, in no file) lies between
        them, and ``data_sha256`` covers it too (it is the hash of
        everything before the tail, as :func:`check_image` reads it).
    """
    data = data_mb * MiB
    size = max(data + TAIL, (disk_mb or 0) * MiB)
    digest = hashlib.sha256()
    if fmt == 'raw':
        path = os.path.join(workdir, 'disk.raw')
        _random_file(path, data, digest)
        _hash_zeros(digest, size - TAIL - data)
        with open(path, 'r+b') as f:
            f.truncate(size)
        return Disks(path=path, format='raw', size=size,
                     data_sha256=digest.hexdigest())
    base = os.path.join(workdir, 'base.raw')
    path = os.path.join(workdir, 'disk.qcow2')
    half = data // 2
    _random_file(base, half, digest)
    with open(base, 'r+b') as f:
        f.truncate(size)
    run('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw',
        path, str(size))
    # NOTE: qemu-io writes at most 2 GiB - 512 bytes from a file at once.
    for at in range(half, data, 1024 * MiB):
        with tempfile.NamedTemporaryFile(dir=workdir) as rnd:
            chunk = os.urandom(min(1024 * MiB, data - at))
            digest.update(chunk)
            rnd.write(chunk)
            rnd.flush()
            run('qemu-io', '-f', 'qcow2', path, '-c',
                'write -q -s %s %d %d' % (rnd.name, at, len(chunk)))
            del chunk
    _hash_zeros(digest, size - TAIL - data)
    return Disks(path=path, format='qcow2', size=size,
                 data_sha256=digest.hexdigest(), base=base)


def domain_xml(name: str, disks: Disks, serial: str,
               agent_channel: bool = True, readback: bool = False,
               uuid: str | None = None, agent: str | None = None) -> str:
    """:param agent: run the QEMU guest agent in the guest: ``'on'``, or
        ``'hang'`` for one whose freeze never returns (see
        ``tools/build-guest.sh``); None: no agent answers.
    """
    gdir = guest_dir()
    dom = ET.Element('domain', type='qemu')
    ET.SubElement(dom, 'name').text = name
    if uuid:
        ET.SubElement(dom, 'uuid').text = uuid
    ET.SubElement(dom, 'memory', unit='MiB').text = '256'
    ET.SubElement(dom, 'vcpu').text = '1'
    os_el = ET.SubElement(dom, 'os')
    ET.SubElement(os_el, 'type', arch='x86_64', machine='pc').text = 'hvm'
    ET.SubElement(os_el, 'kernel').text = os.path.join(gdir, 'vmlinuz')
    ET.SubElement(os_el, 'initrd').text = os.path.join(
        gdir, 'initrd-agent.gz' if agent else 'initrd.gz')
    # NOTE: no_timer_check: on a loaded host a TCG guest's kernel can
    # find its timer too slow and panic ("IO-APIC + timer doesn't work").
    ET.SubElement(os_el, 'cmdline').text = (
        'console=ttyS0 loglevel=4 panic=-1 no_timer_check' +
        (' tinyguest.readback' if readback else '') +
        (' tinyguest.agent=%s' % agent if agent else ''))
    ET.SubElement(dom, 'on_reboot').text = 'destroy'
    devices = ET.SubElement(dom, 'devices')
    if disks.rbd:
        disk = ET.SubElement(devices, 'disk', type='network', device='disk')
        ET.SubElement(disk, 'driver', name='qemu', type=disks.format,
                      cache='writeback')
        auth = ET.SubElement(disk, 'auth', username=disks.rbd['user'])
        ET.SubElement(auth, 'secret', type='ceph', uuid=disks.rbd['secret'])
        source = ET.SubElement(disk, 'source', protocol='rbd',
                               name=disks.path)
        ET.SubElement(source, 'host', name=disks.rbd['host'],
                      port=disks.rbd['port'])
    else:
        disk = ET.SubElement(devices, 'disk', type='file', device='disk')
        ET.SubElement(disk, 'driver', name='qemu', type=disks.format,
                      cache='none')
        ET.SubElement(disk, 'source', file=disks.path)
    ET.SubElement(disk, 'target', dev='vda', bus='virtio')
    for tag in ('serial', 'console'):
        el = ET.SubElement(devices, tag, type='file')
        ET.SubElement(el, 'source', path=serial, append='on')
        if tag == 'console':
            ET.SubElement(el, 'target', type='serial')
    if agent_channel:
        chan = ET.SubElement(devices, 'channel', type='unix')
        ET.SubElement(chan, 'target', type='virtio',
                      name='org.qemu.guest_agent.0')
    return ET.tostring(dom, encoding='unicode')


class TestGuest:
    """A running counter-writing guest on a real libvirtd."""

    def __init__(self, conn: libvirt.virConnect, workdir: str, name: str,
                 fmt: str = 'qcow2', data_mb: int = 64,
                 agent_channel: bool = True,
                 disks: 'Disks | Callable[[Disks, str], Disks] | None' = None,
                 readback: bool = False, uuid: str | None = None,
                 agent: str | None = None,
                 disk_mb: int | None = None) -> None:
        """:param disks: the disks to use, or a function that turns the
            made ones into others (e.g. moves them into RBD) given the
            domain name.
        :param uuid: the domain's UUID (e.g. a Nova instance's).
        :param agent: ``'on'``: the guest runs the QEMU guest agent (on
            the agent channel, so ``agent_channel`` must stay True) with
            an ext4 filesystem for it to freeze; ``'hang'``: an agent whose
            ``guest-fsfreeze-freeze`` never returns. :meth:`start` then
            also waits for the agent to connect.
        :param disk_mb: the made disk's virtual size, when larger than
            its data (see :func:`make_disks`).
        """
        if agent not in (None, 'on', 'hang'):
            raise ValueError('agent must be None, "on" or "hang"')
        if agent and not os.path.exists(os.path.join(guest_dir(),
                                                     'initrd-agent.gz')):
            raise StackMissing('the test guest in %s has no agent: run '
                               '"tools/stack.sh up"' % guest_dir())
        self.conn = conn
        self.workdir = workdir
        self.name = PREFIX + name
        os.makedirs(workdir, exist_ok=True)
        os.chmod(workdir, 0o755)
        self.serial = os.path.join(workdir, 'serial.log')
        self.remove()
        if isinstance(disks, Disks):
            self.disks = disks
        else:
            self.disks = make_disks(workdir, fmt, data_mb, disk_mb)
            if disks is not None:
                self.disks = disks(self.disks, self.name)
        self.dom = conn.defineXML(domain_xml(self.name, self.disks,
                                             self.serial, agent_channel,
                                             readback, uuid, agent))
        self.agent = agent

    # -- lifecycle -----------------------------------------------------
    def start(self, timeout: float = 120) -> float:
        """Boot and wait for the guest to say READY and start counting."""
        started = time.monotonic()
        ready_before = self.serial_text().count('TINYGUEST READY')
        self.dom.create()
        polling.wait_until(
            lambda: self.serial_text().count('TINYGUEST READY') >
            ready_before, timeout, 0.1,
            lambda: 'guest %s did not boot:\n%s' % (
                self.name, self.serial_text()[-2000:]))
        boot = time.monotonic() - started
        # NOTE: a guest booted again counts from 1: wait for the first
        # counter of this boot (after it, every counter sector is written
        # once more), not for one above the last boot's.
        polling.wait_until(
            lambda: 'CTR ' in self.serial_text().split(
                'TINYGUEST READY')[-1],
            max(0.0, timeout - (time.monotonic() - started)), 0.1,
            lambda: 'guest %s does not count:\n%s' % (
                self.name, self.serial_text()[-2000:]))
        if self.agent:
            self.wait_agent()
        return boot

    def wait_agent(self, timeout: float = 60) -> None:
        """Wait until libvirt sees the guest agent connected."""
        def failed() -> str:
            return 'the agent of guest %s did not connect:\n%s' % (
                self.name, self.serial_text()[-2000:])

        def connected() -> bool:
            assert 'AGENT-FAILED' not in self.serial_text(), failed()
            root = ET.fromstring(self.dom.XMLDesc(0))
            return any(
                target.get('name') == 'org.qemu.guest_agent.0' and
                target.get('state') == 'connected'
                for target in root.findall('./devices/channel/target'))

        polling.wait_until(connected, timeout, 0.2, failed)

    def agent_command(self, command: str, timeout: int = 10) -> object:
        """The ``return`` of a guest agent command (by name), as
        ``virsh qemu-agent-command`` gets it.
        """
        out = run('virsh', '-c', URI, 'qemu-agent-command', '--timeout',
                  str(timeout), self.name, json.dumps({'execute': command}))
        return json.loads(out)['return']

    def last_fs_beat(self) -> int:
        """The last beat the agent guest's writer printed on its ext4
        filesystem (about one a second; none while it is frozen).
        """
        found = re.findall(r'^FS (\d+)', self.serial_text(), re.M)
        return int(found[-1]) if found else 0

    def wait_counter(self, value: int, timeout: float = 60) -> int:
        def reached() -> list[int]:
            now = self.last_counter()
            return [now] if now >= value else []

        return polling.wait_until(
            reached, timeout, 0.2,
            lambda: 'guest %s counter stuck at %d' % (
                self.name, self.last_counter()))[0]

    def remove(self) -> None:
        try:
            dom = self.conn.lookupByName(self.name)
        except libvirt.libvirtError:
            return
        if dom.isActive():
            dom.destroy()
        if dom.isPersistent():
            dom.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)

    # -- observation ---------------------------------------------------
    def serial_text(self) -> str:
        try:
            with open(self.serial, 'rb') as f:
                return f.read().decode(errors='replace')
        except FileNotFoundError:
            return ''

    def readback(self) -> tuple[str, str]:
        """The hashes of its disk's data and counter sectors, as the guest
        read them at boot (``readback=True``).
        """
        text = self.serial_text()
        return (re.findall(r'^TINYGUEST DATA ([0-9a-f]{64})', text, re.M)[-1],
                re.findall(r'^TINYGUEST TAIL ([0-9a-f]{64})', text, re.M)[-1])

    def boots(self) -> int:
        return self.serial_text().count('TINYGUEST READY')

    def last_counter(self) -> int:
        """The last counter the guest printed (it prints every 500)."""
        found = re.findall(r'^CTR (\d+)', self.serial_text(), re.M)
        return int(found[-1]) if found else 0

    def state(self) -> int:
        return self.dom.state()[0]

    def inactive_xml(self) -> str:
        return self.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


@dataclasses.dataclass
class ImageCheck:
    data_sha256: str
    counters: list[tuple[int, int]]
    point_in_time: bool
    last: int


def add_raw_disk(g: 'TestGuest', size: int,
                 target: str = 'vdb') -> tuple[str, str]:
    """Give the defined (not running) guest ``g`` a raw disk of ``size``
    random bytes in its work directory; its path and sha256.
    """
    data = os.urandom(size)
    path = os.path.join(g.workdir, '%s.raw' % target)
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, 0o666)
    g.dom.attachDeviceFlags(
        '<disk type="file" device="disk"><driver name="qemu" type="raw" '
        'cache="none"/><source file="%s"/><target dev="%s" bus="virtio"/>'
        '</disk>' % (path, target), libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    return path, hashlib.sha256(data).hexdigest()


def check_image(path: str, fmt: str, size: int) -> ImageCheck:
    """Read an image as the guest would see it: data hash and counters.
    A qcow2 image must pass ``qemu-img check`` first.
    """
    if fmt == 'qcow2':
        run('qemu-img', 'check', '-f', fmt, path)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as tmp:
        raw = os.path.join(tmp, 'check.raw')
        run('qemu-img', 'convert', '-f', fmt, '-O', 'raw', path, raw)
        digest = hashlib.sha256()
        with open(raw, 'rb') as f:
            left = size - TAIL
            while left:
                chunk = f.read(min(left, 8 * MiB))
                digest.update(chunk)
                left -= len(chunk)
            f.seek(size - SLOTS * SECTOR)
            tail = f.read(SLOTS * SECTOR)
    counters = []
    for slot in range(SLOTS):
        sector = tail[slot * SECTOR:(slot + 1) * SECTOR]
        if sector.startswith(b'CTR '):
            counters.append((slot, int(sector[4:16])))
    ok, last = counters_consistent(counters)
    return ImageCheck(digest.hexdigest(), counters, ok, last)


def readback_of(path: str, size: int) -> tuple[str, str]:
    """What a readback guest prints for the raw image ``path``: the
    sha256 of everything before the counter sectors, and of them.
    """
    tail_at = size - SLOTS * SECTOR
    data, tail = hashlib.sha256(), hashlib.sha256()
    with open(path, 'rb') as f:
        left = tail_at
        while left:
            chunk = f.read(min(left, 8 * MiB))
            data.update(chunk)
            left -= len(chunk)
        tail.update(f.read(SLOTS * SECTOR))
    return data.hexdigest(), tail.hexdigest()


def counters_consistent(counters: list[tuple[int, int]]) -> tuple[bool, int]:
    """True when the counters are one point in time of the guest's
    sequential writes: exactly ``m-255 .. m``, each in slot ``n % 256``.
    """
    if not counters:
        return False, 0
    if any(n % SLOTS != slot for slot, n in counters):
        return False, 0
    values = sorted(n for _, n in counters)
    last = values[-1]
    return values == list(range(max(1, last - SLOTS + 1), last + 1)), last


def image_info(path: str, fmt: str, force_share: bool = False) -> dict:
    share = ['-U'] if force_share else []
    return json.loads(run('qemu-img', 'info', '-f', fmt, '--output=json',
                          *share, path))


def is_stopped(proc: subprocess.Popen) -> bool:
    """The command is stopped (SIGSTOP, as the journal's test hooks stop
    it at a step); a command that ended fails the test with its output.
    """
    if proc.poll() is not None:
        out, err = proc.communicate()
        raise AssertionError('the command ended (%s) before its step: %s%s'
                             % (proc.returncode, out, err))
    with open('/proc/%d/stat' % proc.pid) as f:
        return f.read().rsplit(')', 1)[1].split()[0] == 'T'


def wait_stopped(proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until the command stops at its step (see :func:`is_stopped`)."""
    try:
        polling.wait_until(lambda: is_stopped(proc), timeout, 0.05,
                           'the command did not reach its step')
    except AssertionError:
        proc.kill()
        raise
