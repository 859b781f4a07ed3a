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

"""The choice between a live, cold or direct snapshot.

:func:`choose` is a pure function of :class:`Facts`: no libvirt, no files.
It returns the method and the reason, so that the reason can be shown to
the operator, logged and stored with the image.
"""

import dataclasses

from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import guest

AUTO, LIVE, COLD, DIRECT = 'auto', 'live', 'cold', 'direct'
METHODS = (AUTO, LIVE, COLD)
#: A request (not a method): live where a live snapshot is possible,
#: otherwise what ``auto`` would take. The Nova driver asks for it when
#: ``[snapshot] method`` is ``live``: Nova's callers (shelve, a snapshot
#: of a stopped server) expect a snapshot, not a refusal.
PREFER_LIVE = 'prefer-live'
REQUESTS = METHODS + (PREFER_LIVE,)

RUNNING, PAUSED, SHUTOFF = guest.RUNNING, guest.PAUSED, guest.SHUTOFF


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the choice depends on."""

    guest: str
    hypervisor: str
    libvirt_version: tuple[int, ...]
    qemu_version: tuple[int, ...]
    min_libvirt_version: tuple[int, ...]
    min_qemu_version: tuple[int, ...]
    power_state: str
    persistent: bool = True
    backend: str = ''
    backend_supports_live: bool = True
    #: The backend has a direct path (so not taking it needs a reason).
    backend_supports_direct: bool = False
    live_disabled: bool = False
    #: Why the backend's direct path cannot be used; None when it can.
    direct_unavailable: str | None = 'the backend has no direct path'


@dataclasses.dataclass(frozen=True)
class Plan:
    """A chosen method and why it was chosen."""

    method: str
    reason: str


def version_str(version: tuple[int, ...]) -> str:
    return '.'.join(str(v) for v in version)


def parse_version(text: str) -> tuple[int, ...]:
    """Parse ``'8.0.0'`` into ``(8, 0, 0)``."""
    try:
        return tuple(int(part) for part in text.strip().split('.'))
    except ValueError:
        raise exception.InvalidInput(
            reason='%r is not a version like 8.0.0' % text)


def check_method(method: str) -> str:
    """:raises InvalidInput: ``method`` is not auto, live or cold (or
        :data:`PREFER_LIVE`).
    """
    if method not in REQUESTS:
        raise exception.InvalidInput(
            reason='method %r is not one of %s' % (method,
                                                   ', '.join(METHODS)))
    return method


def live_blockers(facts: Facts) -> list[str]:
    """Every reason why a live snapshot is impossible, in plain words."""
    reasons = []
    if facts.hypervisor.upper() != 'QEMU':
        reasons.append('the hypervisor is %s, not QEMU' % facts.hypervisor)
    if facts.libvirt_version < facts.min_libvirt_version:
        reasons.append('libvirt %s is older than the minimum %s' % (
            version_str(facts.libvirt_version),
            version_str(facts.min_libvirt_version)))
    if facts.qemu_version < facts.min_qemu_version:
        reasons.append('QEMU %s is older than the minimum %s' % (
            version_str(facts.qemu_version),
            version_str(facts.min_qemu_version)))
    if facts.power_state not in (RUNNING, PAUSED):
        reasons.append('the guest is %s' % facts.power_state)
    if not facts.backend_supports_live:
        reasons.append('the %s backend cannot copy a running disk' %
                       facts.backend)
    if facts.live_disabled:
        reasons.append('[snapshot_workarounds] disable_live_snapshot is set')
    return reasons


def choose(facts: Facts, requested: str = AUTO) -> Plan:
    """Choose the snapshot method for ``facts``.

    :param facts: the host, guest and backend facts.
    :param requested: ``auto``, ``live``, ``cold`` or
        :data:`PREFER_LIVE` (``live`` when possible, else as ``auto``).
    :returns: the :class:`Plan`.
    :raises LiveSnapshotImpossible: ``live`` was requested and is not
        possible; the message names every reason.
    :raises ColdSnapshotImpossible: a running transient guest cannot be
        saved and restored.
    """
    check_method(requested)
    if requested == COLD:
        return _cold(facts, 'a cold snapshot was requested')

    if facts.direct_unavailable is None:
        return Plan(DIRECT, 'the %s backend copies the disk inside the '
                            'storage, the guest keeps running' % facts.backend)
    plan = _choose_copy(facts, requested)
    if facts.backend_supports_direct:
        return Plan(plan.method, 'no direct snapshot: %s; %s' % (
            facts.direct_unavailable, plan.reason))
    return plan


def _choose_copy(facts: Facts, requested: str) -> Plan:
    blockers = live_blockers(facts)
    if not blockers:
        if requested in (LIVE, PREFER_LIVE):
            return Plan(LIVE, 'a live snapshot was requested')
        return Plan(LIVE, 'the guest is %s and the host supports live '
                          'snapshots' % facts.power_state)
    if requested == LIVE:
        raise exception.LiveSnapshotImpossible(
            guest=facts.guest, reason='; '.join(blockers))
    # NOTE: a live snapshot preferred but impossible is no error: the
    # reason says a live one was preferred and why it was not taken.
    asked = ('a live snapshot was preferred, but ' if
             requested == PREFER_LIVE else '')
    if facts.power_state not in (RUNNING, PAUSED):
        return Plan(COLD, '%sthe guest is %s, so a copy needs no downtime' %
                    (asked, facts.power_state))
    return _cold(facts, (asked or 'live is not possible: ') +
                 '; '.join(blockers))


def _cold(facts: Facts, reason: str) -> Plan:
    if facts.power_state in (RUNNING, PAUSED) and not facts.persistent:
        raise exception.ColdSnapshotImpossible(
            guest=facts.guest,
            reason='the guest is transient, so libvirt cannot save and '
                   'restore it; use a live snapshot')
    return Plan(COLD, reason)
