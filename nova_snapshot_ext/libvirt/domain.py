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

"""A libvirt domain handle that outlives a restart of libvirtd.

When the connection to libvirtd is lost (libvirtd restarted; QEMU and its
block jobs go on and the new libvirtd re-attaches to them), a
:class:`Domain` of a :class:`~nova_snapshot_ext.libvirt.host.Host` has the
host connect again, looks its domain up again by UUID, and asks the caller
of the failed call whether to make it again (:data:`REPEAT`) or whether
it is already done (:data:`DONE`): see
:mod:`nova_snapshot_ext.libvirt.guest` for each call's answer.

Every libvirt error is turned into an exception of
:mod:`nova_snapshot_ext.exception` here.
"""

from collections.abc import Callable
from typing import Any, TypeVar

import libvirt
from oslo_log import log as logging

from nova_snapshot_ext import exception

LOG = logging.getLogger(__name__)


#: Error codes of a connection that is gone; VIR_ERR_SYSTEM_ERROR ("Cannot
#: write data: Broken pipe") and VIR_ERR_INTERNAL_ERROR ("client socket is
#: closed") only when raised by the RPC layer.
_LOST_CODES = (libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INVALID_CONN)
_RPC_LOST_CODES = (libvirt.VIR_ERR_SYSTEM_ERROR,
                   libvirt.VIR_ERR_INTERNAL_ERROR)
_RPC_DOMAINS = (libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE)

#: What to do with a call once connected again (see the module).
REPEAT, DONE = 'repeat', 'done'


def connection_lost(error: libvirt.libvirtError) -> bool:
    """Whether ``error`` says the connection to libvirtd is gone."""
    code = error.get_error_code()
    if code in _LOST_CODES:
        return True
    return (code in _RPC_LOST_CODES and
            error.get_error_domain() in _RPC_DOMAINS)


T = TypeVar('T')


def translated(guest: str, action: str, call: Callable[[], T]) -> T:
    """``call()``, a libvirt error it raises turned into one of ours
    (:func:`translate`).
    """
    try:
        return call()
    except libvirt.libvirtError as e:
        raise translate(e, guest, action)


def translate(error: libvirt.libvirtError, guest: str, action: str,
              active: bool | None = None) -> exception.SnapshotError:
    """Turn a libvirt error into one of our exceptions.

    :param active: whether the domain still runs, when the caller knows.
    """
    code = error.get_error_code()
    message = error.get_error_message() or str(error)
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return exception.GuestGone(guest=guest, reason=message)
    if code == libvirt.VIR_ERR_OPERATION_INVALID and active is False:
        return exception.GuestGone(guest=guest, reason=message)
    if code in (libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
        return exception.QuiesceFailed(guest=guest, reason=message)
    return exception.LibvirtFailed(action=action, guest=guest,
                                   reason=message, code=code)


class Domain:
    """One libvirt domain, looked up again after a reconnect.

    :param host: the :class:`~nova_snapshot_ext.libvirt.host.Host` it
        came from; without one, a lost connection is an error like any
        other.
    """

    def __init__(self, dom: libvirt.virDomain,
                 host: Any = None) -> None:
        self.dom = dom
        self.host = host
        self._generation = host.generation if host is not None else 0
        self.name: str = dom.name()
        self.uuid: str = dom.UUIDString()

    def _call(self, action: str, method: str, *args: Any,
              again: Callable[[], str] | str = REPEAT,
              on_conn: bool = False) -> Any:
        """``method(*args)`` of the domain (of the connection when
        ``on_conn``); when the connection is lost, connect again and ask
        ``again`` whether to repeat it (:data:`REPEAT`) or not
        (:data:`DONE`, then None is returned).
        """
        try:
            return self._invoke(method, args, on_conn)
        except libvirt.libvirtError as e:
            if self.host is None or not connection_lost(e):
                raise translate(e, self.name, action, self._is_active())
            LOG.debug('Lost the connection to libvirtd while trying to '
                      '%(action)s %(guest)s: %(err)s',
                      {'action': action, 'guest': self.name,
                       'err': e.get_error_message()})
        self.refresh()
        if (again() if callable(again) else again) == DONE:
            return None
        try:
            return self._invoke(method, args, on_conn)
        except libvirt.libvirtError as e:
            raise translate(e, self.name, action, self._is_active())

    def _invoke(self, method: str, args: tuple, on_conn: bool) -> Any:
        if self.host is not None and self._generation != \
                self.host.generation:
            self.refresh()
        target = self.host.conn if on_conn and self.host else self.dom
        return getattr(target, method)(*args)

    def refresh(self) -> None:
        """Connect again if needed and look the domain up again.

        :raises HypervisorUnavailable: libvirtd does not answer.
        :raises GuestGone: the domain is no longer defined.
        """
        assert self.host is not None
        if self._generation == self.host.generation:
            self.host.reconnect(self._generation)
        try:
            self.dom = self.host.call(
                lambda c: c.lookupByUUIDString(self.uuid))
        except libvirt.libvirtError as e:
            raise translate(e, self.name, 'look up', False)
        self._generation = self.host.generation

    def _is_active(self) -> bool | None:
        try:
            return bool(self.dom.isActive())
        except libvirt.libvirtError:
            return False
