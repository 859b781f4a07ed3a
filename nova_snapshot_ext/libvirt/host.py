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

"""The libvirt connection and the facts of the host."""

from collections.abc import Callable
import threading

import libvirt
from oslo_log import log as logging

from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import guest as guest_mod

LOG = logging.getLogger(__name__)


def from_libvirt_number(number: int) -> tuple[int, int, int]:
    """Turn libvirt's 9000000 into (9, 0, 0)."""
    return number // 1000000, number // 1000 % 1000, number % 1000


class Host:
    """One libvirt connection, opened on first use and then reused.

    :param wrap: applied to the connection once opened, e.g. Nova's
        ``tpool_wrap`` so that libvirt calls do not block eventlet.
    """

    def __init__(self, uri: str = 'qemu:///system',
                 wrap: Callable[[libvirt.virConnect], libvirt.virConnect]
                 | None = None) -> None:
        self.uri = uri
        self._wrap = wrap
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.Lock()

    @property
    def conn(self) -> libvirt.virConnect:
        with self._lock:
            if self._conn is None or not self._conn.isAlive():
                try:
                    conn = libvirt.open(self.uri)
                except libvirt.libvirtError as e:
                    raise exception.HypervisorUnavailable(
                        uri=self.uri, reason=e.get_error_message())
                self._conn = self._wrap(conn) if self._wrap else conn
            return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                except libvirt.libvirtError:
                    pass
                self._conn = None

    def hypervisor(self) -> str:
        return self.conn.getType()

    def libvirt_version(self) -> tuple[int, int, int]:
        return from_libvirt_number(self.conn.getLibVersion())

    def qemu_version(self) -> tuple[int, int, int]:
        return from_libvirt_number(self.conn.getVersion())

    def has_transient_block_copy(self) -> bool:
        # NOTE: VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB arrived in libvirt
        # 4.5.0; both the library we talk to and the daemon need it.
        return (hasattr(libvirt, 'VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB') and
                self.libvirt_version() >= (4, 5, 0))

    def get_guest(self, name: str) -> 'guest_mod.Guest':
        """Look a guest up by name or UUID.

        :raises GuestNotFound: no such domain.
        """
        conn = self.conn
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            try:
                dom = conn.lookupByUUIDString(name)
            except libvirt.libvirtError:
                raise exception.GuestNotFound(guest=name, uri=self.uri)
        return guest_mod.Guest(dom)

    def list_guests(self) -> list['guest_mod.Guest']:
        return [guest_mod.Guest(dom)
                for dom in self.conn.listAllDomains(0)]
