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

"""Steps that change the guest's state for a point in time: its
filesystems frozen (quiesce), its memory saved and the guest stopped
(a managed save), and the undo of each (the ``freeze`` and
``managed_save`` steps of the journal).
"""

from collections.abc import Iterator
import contextlib
import time

from oslo_log import log as logging

from nova_snapshot_ext.backends import steps
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import undo
from nova_snapshot_ext.libvirt import guest as guest_mod
from nova_snapshot_ext.libvirt import refusals
from nova_snapshot_ext import model

LOG = logging.getLogger(__name__)


def check_quiesce(job: model.SnapshotJob) -> bool:
    """Fail early, before anything changes, when quiesce is required and
    cannot work.

    :returns: whether the guest is not frozen because it is paused (it
        does no I/O and its agent cannot answer) or does not run.
    :raises QuiesceFailed: quiesce is required and impossible.
    """
    guest = job.guest
    state = guest.power_state()
    if state not in (guest_mod.RUNNING, guest_mod.PAUSED):
        # NOTE: a guest that does not run writes nothing: its disk is
        # as consistent as it gets, and no freeze is needed or possible.
        return True
    paused = state == guest_mod.PAUSED
    if job.quiesce == 'required':
        if paused:
            raise exception.QuiesceFailed(
                guest=guest.name, reason='the guest is paused, so its '
                                         'agent cannot answer')
        if not guest.agent_connected():
            raise exception.QuiesceFailed(
                guest=guest.name, reason='no QEMU guest agent is connected')
    return paused


def recheck_shared(job: model.SnapshotJob) -> None:
    """Check the job's shareable disks again (see
    :mod:`~nova_snapshot_ext.libvirt.refusals`), right before the point in
    time: another writer may have been resumed since the first check.
    """
    disks = job.guest.disks() if job.request.all_disks else [job.disk]
    refusals.recheck_shared(job.guest, disks, job.host)


@contextlib.contextmanager
def quiesced(job: model.SnapshotJob, paused: bool,
             outcome: steps.Outcome) -> Iterator[None]:
    """The guest's filesystems frozen, when asked to and able to, for the
    duration of the block; thawed whatever happens.

    :param paused: what :func:`check_quiesce` returned.
    :raises QuiesceFailed: quiesce is required and the freeze failed.
    :raises UnsupportedDisk: a shareable disk may be written by another
        domain now (:func:`recheck_shared`).
    """
    step = None
    if not paused:
        step = _freeze(job)
    outcome.quiesced = step is not None
    try:
        # NOTE: the block takes the point in time: a writer of a shareable
        # disk resumed since the first check is caught here.
        recheck_shared(job)
        yield
    finally:
        if step is not None:
            job.guest.thaw()
            journal.current().done(step)


def _freeze(job: model.SnapshotJob) -> journal.Step | None:
    if job.quiesce == 'never':
        return None
    reason = ''
    if not job.guest.agent_connected():
        reason = 'no QEMU guest agent is connected'
    else:
        record = journal.current()
        timeout = job.conf.snapshot.quiesce_timeout
        # NOTE: the freeze sets the domain's agent timeout, which outlives
        # this process: the journal says so, for ``recover`` to set it
        # back if the process is killed before the thaw does.
        step = record.add(journal.FREEZE, agent_timeout=timeout)
        try:
            job.guest.freeze(timeout=timeout)
            record.reached(journal.FREEZE)
            return step
        except exception.QuiesceFailed as e:
            # NOTE: a freeze that failed may have frozen some filesystems;
            # thawing is harmless either way.
            _thaw_quietly(job.guest)
            record.done(step)
            reason = str(e.kwargs.get('reason', e))
    if job.quiesce == 'required':
        raise exception.QuiesceFailed(guest=job.guest.name, reason=reason)
    # NOTE: most guests run no agent; that is worth a note, not a
    # warning. An agent that fails to freeze is worth a warning.
    log = LOG.info if reason.startswith('no QEMU') else LOG.warning
    log('Snapshot of %(guest)s is crash-consistent, not quiesced: '
        '%(reason)s', {'guest': job.guest.name, 'reason': reason})
    return None


def _thaw_quietly(guest: guest_mod.Guest) -> None:
    try:
        guest.thaw()
    except exception.SnapshotError as e:
        LOG.debug('Thawing %(guest)s: %(err)s', {'guest': guest.name,
                                                 'err': e})


@contextlib.contextmanager
def suspended(job: model.SnapshotJob,
              outcome: steps.Outcome) -> Iterator[None]:
    """A running or paused guest's memory saved and the guest stopped for
    the duration of the block, then restored in the state it was in, even
    when the block fails. A guest that does not run is left alone. The
    request's ``guest_devices`` is entered before the save and left after
    the restore.

    :raises GuestRestoreFailed: the guest could not be brought back.
    :raises UnsupportedDisk: a shareable disk may be written by another
        domain now (:func:`recheck_shared`); nothing was touched.
    """
    recheck_shared(job)
    guest = job.guest
    state = guest.power_state()
    if state not in (guest_mod.RUNNING, guest_mod.PAUSED):
        yield
        return
    stopped = time.monotonic()
    record = journal.current()
    # NOTE: the devices go back once the guest is back (or, when the save
    # failed, still running); see SnapshotRequest.guest_devices.
    with job.request.guest_devices():
        with record.step(journal.MANAGED_SAVE, state=state) as step:
            guest.managed_save(paused=state == guest_mod.PAUSED)
        try:
            yield
        finally:
            restore_state(guest, state)
            record.done(step)
            outcome.downtime = time.monotonic() - stopped


def restore_state(guest: guest_mod.Guest, state: str) -> None:
    """Start ``guest`` from its managed save and check it is ``state``.

    :raises GuestRestoreFailed: it could not be, or is in another state.
    """
    try:
        guest.restore()
    except exception.SnapshotError as e:
        raise exception.GuestRestoreFailed(guest=guest.name, state=state,
                                           reason=e)
    now = guest.power_state()
    if now != state:
        raise exception.GuestRestoreFailed(guest=guest.name, state=state,
                                           reason='it is %s' % now)


def undo_freeze(r: undo.Recovering, step: journal.Step) -> None:
    """``freeze``: thaw the guest's filesystems, and set the agent
    timeout the freeze set back to libvirt's default.
    """
    g = r.active_guest()
    if g is None or not g.agent_connected():
        r.act(undo.NOTHING, 'filesystems', 'no guest agent answers, so '
              'none is frozen')
    else:
        r.act('thaw', 'filesystems', run=g.thaw)
    if g is not None and step.data.get('agent_timeout') is not None:
        # NOTE: libvirt keeps the timeout the freeze set for as long as
        # the domain runs, agent or none.
        r.act('reset', 'agent timeout', "to libvirt's default (it was set "
              'to %s s)' % step.data['agent_timeout'],
              run=g.reset_agent_timeout)


def undo_managed_save(r: undo.Recovering, step: journal.Step) -> None:
    """``managed_save``: start the guest from its managed save, back in
    the journaled state.
    """
    state = str(step.data.get('state'))
    g = r.guest()
    if g is None or not g.has_managed_save():
        r.act(undo.NOTHING, 'managed save', 'there is none')
        return
    if g.power_state() != guest_mod.SHUTOFF:
        r.act(undo.KEEP, 'managed save', 'the guest is %s' %
              g.power_state())
        return
    r.act('restore', 'the guest', 'from its managed save, %s' % state,
          run=lambda: restore_state(g, state))
