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

"""The libvirt connection and the facts of the host.

When libvirtd restarts, every call on the open connection fails (a broken
pipe, "client socket is closed"); QEMU and its block jobs go on and the
new libvirtd re-attaches to them. :meth:`Host.reconnect` opens the
connection again, waiting (up to :data:`RECONNECT_TIMEOUT` seconds) for
libvirtd to answer, and :class:`~nova_snapshot_ext.libvirt.guest.Guest`
looks its domain up again on it (see its docstring for which calls it
then repeats).
"""

from collections.abc import Callable
import threading
import time
from typing import Any, TypeVar

import libvirt
from oslo_log import log as logging

from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import domain
from nova_snapshot_ext.libvirt import guest as guest_mod
from nova_snapshot_ext import retry

LOG = logging.getLogger(__name__)

T = TypeVar('T')

#: Seconds to wait for libvirtd to answer again once the connection to it
#: is lost (a restart takes a few seconds; the first start after an
#: upgrade probes QEMU for longer).
RECONNECT_TIMEOUT = 60.0
#: Seconds between two tries to connect again.
RECONNECT_INTERVAL = 0.5


def from_libvirt_number(number: int) -> tuple[int, int, int]:
    """Turn libvirt's 9000000 into (9, 0, 0)."""
    return number // 1000000, number // 1000 % 1000, number % 1000


class Host:
    """One libvirt connection, opened on first use and then reused.

    :param wrap: applied to the connection once opened, e.g. Nova's
        ``tpool_wrap`` so that libvirt calls do not block eventlet.
    :param reconnect_timeout: seconds :meth:`reconnect` waits for libvirtd.
    """

    def __init__(self, uri: str = 'qemu:///system',
                 wrap: Callable[[libvirt.virConnect], libvirt.virConnect]
                 | None = None,
                 reconnect_timeout: float = RECONNECT_TIMEOUT) -> None:
        self.uri = uri
        self._wrap = wrap
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.Lock()
        self.reconnect_timeout = reconnect_timeout
        #: How many times the connection was opened again after a loss;
        #: a domain handle from an older generation is stale.
        self.generation = 0
        #: When a reconnect last gave up (monotonic seconds).
        self._gave_up: float | None = None
        #: What the daemon told of itself on this connection.
        self._facts: dict[str, Any] = {}

    @property
    def conn(self) -> libvirt.virConnect:
        with self._lock:
            if self._conn is None or not self._conn.isAlive():
                if self._conn is not None:
                    # NOTE: domains looked up on the dead one are stale.
                    self._drop()
                    self.generation += 1
                try:
                    conn = libvirt.open(self.uri)
                except libvirt.libvirtError as e:
                    raise exception.HypervisorUnavailable(
                        uri=self.uri, reason=e.get_error_message())
                self._conn = self._wrap(conn) if self._wrap else conn
            return self._conn

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        self._facts = {}
        if self._conn is not None:
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass
            self._conn = None

    def reconnect(self, generation: int | None = None) -> int:
        """Open the connection again after it was lost, waiting for
        libvirtd to answer for up to :attr:`reconnect_timeout` seconds.

        :param generation: the generation the caller saw fail; when the
            connection was opened again since (by another caller), it is
            not opened once more.

        Within :attr:`reconnect_timeout` seconds of a reconnect that gave
        up, it tries once without waiting: the undo steps that follow a
        failure do not wait again each (``recover`` finishes their work).
        :returns: the new generation.
        :raises HypervisorUnavailable: libvirtd did not answer in time.
        """
        with self._lock:
            if generation is not None and generation != self.generation:
                return self.generation
            self._drop()
            LOG.warning('The connection to libvirt at %(uri)s was lost '
                        '(libvirtd restarted?); connecting again',
                        {'uri': self.uri})
            timeout = self.reconnect_timeout
            if self._gave_up is not None and \
                    time.monotonic() - self._gave_up < timeout:
                timeout = 0
            try:
                conn = retry.call(libvirt.open, self.uri,
                                  on=libvirt.libvirtError, timeout=timeout,
                                  interval=RECONNECT_INTERVAL)
            except libvirt.libvirtError as e:
                self._gave_up = time.monotonic()
                raise exception.HypervisorUnavailable(
                    uri=self.uri,
                    reason='the connection was lost and libvirtd did not '
                           'answer again within %d s (%s)' %
                           (self.reconnect_timeout, e.get_error_message()))
            self._conn = self._wrap(conn) if self._wrap else conn
            self.generation += 1
            self._gave_up = None
            LOG.info('Connected to libvirt at %(uri)s again',
                     {'uri': self.uri})
            return self.generation

    def call(self, fn: Callable[[libvirt.virConnect], T]) -> T:
        """``fn(conn)``, once more on a new connection when the first
        connection was lost. Only for calls that are safe to repeat.
        """
        generation = self.generation
        try:
            return fn(self.conn)
        except libvirt.libvirtError as e:
            if not domain.connection_lost(e):
                raise
        self.reconnect(generation)
        return fn(self.conn)

    def _fact(self, name: str, fn: Callable[[libvirt.virConnect], T]) -> T:
        """``fn(conn)``, asked once per connection.

        NOTE: libvirtd may probe QEMU again to answer ``getVersion``
        (seconds on a TCG host, every time); what it answers changes only
        when libvirtd restarts, which drops the connection. Nova's driver
        also learns the versions once, when nova-compute starts.
        """
        self.conn  # noqa: B018 - a dead connection goes, with its facts
        if name not in self._facts:
            self._facts[name] = self.call(fn)
        return self._facts[name]

    def hypervisor(self) -> str:
        return self._fact('type', lambda c: c.getType())

    def libvirt_version(self) -> tuple[int, int, int]:
        return from_libvirt_number(
            self._fact('libvirt', lambda c: c.getLibVersion()))

    def qemu_version(self) -> tuple[int, int, int]:
        return from_libvirt_number(
            self._fact('qemu', lambda c: c.getVersion()))

    def domain_capabilities(self, virttype: str, emulator: str | None,
                            arch: str | None, machine: str | None) -> str:
        """The domain capabilities XML for guests of that kind."""
        return self._fact(
            'domcaps %s %s %s %s' % (virttype, emulator, arch, machine),
            lambda c: c.getDomainCapabilities(emulator, arch, machine,
                                              virttype, 0))

    def has_transient_block_copy(self) -> bool:
        # NOTE: VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB arrived in libvirt
        # 4.5.0; both the library we talk to and the daemon need it.
        return (hasattr(libvirt, 'VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB') and
                self.libvirt_version() >= (4, 5, 0))

    def get_guest(self, name: str) -> 'guest_mod.Guest':
        """Look a guest up by name or UUID.

        :raises GuestNotFound: no such domain.
        """
        def lookup(conn: Any) -> libvirt.virDomain | None:
            try:
                return conn.lookupByName(name)
            except libvirt.libvirtError as e:
                if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
            try:
                return conn.lookupByUUIDString(name)
            except libvirt.libvirtError as e:
                if domain.connection_lost(e):
                    raise
                return None

        dom = self.call(lookup)
        if dom is None:
            raise exception.GuestNotFound(guest=name, uri=self.uri)
        return guest_mod.Guest(dom, self)

    def list_guests(self) -> list['guest_mod.Guest']:
        return [guest_mod.Guest(dom, self)
                for dom in self.call(lambda c: c.listAllDomains(0))]
