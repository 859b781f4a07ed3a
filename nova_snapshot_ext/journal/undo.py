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

"""What cleaning up reports, and how a step kind declares its undo.

Every step kind a snapshot journals (:mod:`nova_snapshot_ext.journal.journal`)
is undone by a function that the module making the step declares, under
the kind's name, in the ``nova_snapshot_ext.undo`` entry point namespace
(``setup.cfg``). ``recover`` (:mod:`nova_snapshot_ext.cleanup.recovery`)
looks the function up with :func:`handler` and calls it with a
:class:`Recovering`, so that cleaning up imports no backend and a
third-party plugin can journal kinds of its own. A handler looks at what
is there now and undoes only what its step names, reporting each thing it
does (or deliberately does not do) with ``r.act``.

:class:`Action` is the one thing ``gc``, its sweep and ``recover`` report.
"""

from collections.abc import Callable
import contextlib
import dataclasses
import functools
import os
import shutil
from typing import Any, Protocol, TypeVar

from nova_snapshot_ext.journal import journal
from nova_snapshot_ext import plugins

NAMESPACE = 'nova_snapshot_ext.undo'

#: Verbs of actions that change nothing.
NOTHING, SKIP, KEEP, UNKNOWN, REMOVE_JOURNAL = (
    'nothing to do', 'skip', 'keep', 'unknown step', 'remove journal')
#: Verbs that change nothing and are not worth a warning.
QUIET = (NOTHING, SKIP, REMOVE_JOURNAL)

T = TypeVar('T')


@dataclasses.dataclass
class Action:
    """One thing cleaning up does (or, in a dry run, would do; or, for
    ``keep``, deliberately does not do). ``journal`` and ``guest`` name
    the journal ``recover`` was undoing; gc's actions have neither.
    """

    verb: str
    target: str
    detail: str = ''
    error: str | None = None
    run: Callable[[], Any] | None = dataclasses.field(
        default=None, repr=False, compare=False)
    journal: str | None = None
    guest: str | None = None

    def as_dict(self) -> dict[str, Any]:
        # NOTE: "action" and "reason" are the keys gc printed before it
        # shared this type with recover; kept for scripts that read them.
        return {'verb': self.verb, 'target': self.target,
                'detail': self.detail, 'error': self.error,
                'journal': self.journal, 'guest': self.guest,
                'action': self.verb, 'reason': self.detail}

    def line(self, dry_run: bool = False) -> str:
        verb = self.verb
        if self.error:
            verb = 'FAILED to ' + verb
        elif dry_run and verb not in (NOTHING, SKIP, KEEP, UNKNOWN):
            verb = 'would ' + verb
        text = '%s %s' % (verb, self.target)
        if self.journal is not None:
            text = '%s: %s' % (self.guest or '?', text)
        if self.detail:
            text += ': ' + self.detail
        if self.error:
            text += ' (%s)' % self.error
        return text


class Recovering(Protocol):
    """What a handler is given: the recovery of one journal."""

    conf: Any
    j: journal.Journal
    #: The libvirt connection (``nova_snapshot_ext.libvirt.host.Host``).
    host: Any
    #: The backends of a running service (the Nova driver's), or None.
    backends: Any

    def act(self, verb: str, target: str, detail: str = '',
            run: Callable[[], Any] | None = None) -> None:
        """Report an action, and run it unless this is a dry run."""

    def guest(self) -> Any:
        """The journal's guest (``libvirt.guest.Guest``), None when it is
        gone.
        """

    def active_guest(self) -> Any:
        """The guest when it runs (or is paused), else None."""

    def store(self, spec: str | None) -> Any:
        """The image store ``spec`` names, None for none."""

    def has_location(self) -> bool:
        """Whether the snapshot registered a location in Glance."""

    def cached(self, key: str, make: Callable[[], T]) -> T:
        """What ``make`` returns, made once per journal."""

    def on_close(self, close: Callable[[], Any]) -> None:
        """Call ``close`` once the journal is dealt with."""


Handler = Callable[[Recovering, journal.Step], None]


@functools.cache
def handler(kind: str) -> Handler | None:
    """The undo a plugin declared for steps of ``kind``; None when no
    installed plugin knows the kind. Looked up once per process.
    """
    return plugins.load(NAMESPACE, kind)


def kinds() -> list[str]:
    """The step kinds whose undo is declared."""
    return plugins.names(NAMESPACE)


def short(data: dict[str, Any]) -> str:
    """A step's data on one line, for a report."""
    text = ', '.join('%s=%s' % (k, v) for k, v in sorted(data.items())
                     if k != 'xml')
    return text[:200]


def remove_path(r: Recovering, step: journal.Step,
                ours: Callable[[str], bool], what: str) -> None:
    """Undo a step that made a directory or a file (its ``path``): remove
    it, when its name says it is one of ours (``ours`` of its base name).
    """
    path = str(step.data.get('path') or '')
    if not os.path.isabs(path) or not ours(os.path.basename(
            path.rstrip('/'))):
        r.act(KEEP, path or '(no path)', 'not a %s of ours' % what)
        return
    if not os.path.lexists(path):
        r.act(NOTHING, path, 'already gone')
        return
    r.act('remove', path, what, run=lambda: _remove(path))


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
