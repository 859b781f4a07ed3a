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

"""The backup job's document and the choice of the live copy style. The
job itself runs against the real libvirt in tests/functional.
"""

import ast
import os
import pwd
import shutil
import stat
import tempfile
import types
import xml.etree.ElementTree as ET

import pytest

from nova_snapshot_ext.backends import backup as backup_backend
from nova_snapshot_ext.backends import local
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.libvirt import backup


def test_the_job_exports_its_disks_and_leaves_the_others_out():
    export = backup.Export(socket='/run/s/export.sock',
                           scratch={'vda': '/tmp/d/vda.scratch'})
    root = ET.fromstring(export.xml(['vda', 'vdb']))
    assert root.get('mode') == 'pull'
    assert root.find('server').attrib == {'transport': 'unix',
                                          'socket': '/run/s/export.sock'}
    vda, vdb = root.findall('./disks/disk')
    assert (vda.get('name'), vda.get('backup')) == ('vda', 'yes')
    assert vda.find('scratch').get('file') == '/tmp/d/vda.scratch'
    # A disk not listed would be backed up too: it is said not to be.
    assert vdb.attrib == {'name': 'vdb', 'backup': 'no'}
    assert export.uri('vda') == 'nbd+unix:///vda?socket=/run/s/export.sock'


class FakeGuest:
    name = 'g'

    def __init__(self, backup_supported, qemu=None):
        self._backup = backup_supported
        self._qemu = qemu or (os.geteuid(), os.getegid())

    def backup_supported(self):
        return self._backup

    def qemu_owner(self):
        return self._qemu


def job(conf, style, backup_api, transient):
    conf.set_override('live_copy_style', style, group='snapshot_libvirt')
    host = types.SimpleNamespace(
        has_transient_block_copy=lambda: transient)
    return types.SimpleNamespace(conf=conf, guest=FakeGuest(backup_api),
                                 host=host)


@pytest.mark.parametrize('style,backup_api,transient,chosen', [
    ('auto', True, True, 'backup'),
    ('auto', False, True, 'blockcopy'),
    ('auto', False, False, 'rebase'),
    ('backup', True, False, 'backup'),
    ('blockcopy', True, True, 'blockcopy'),
    ('rebase', True, True, 'rebase'),
])
def test_live_style(conf, style, backup_api, transient, chosen):
    assert local.live_style(job(conf, style, backup_api, transient)) == \
        chosen


@pytest.mark.parametrize('style,backup_api,transient,reason', [
    ('auto', True, True, 'libvirt and QEMU here have the backup API for '
                         'guests of this kind'),
    ('auto', False, True, 'libvirt and QEMU here have no backup API for '
                          'guests of this kind: a mirror into a delta'),
    ('auto', False, False, 'no backup API for guests of this kind nor '
                           'transient block copy jobs: a mirror with the '
                           'domain made transient'),
    ('blockcopy', True, True, '[snapshot_libvirt] live_copy_style = '
                              'blockcopy'),
    ('backup', True, False, '[snapshot_libvirt] live_copy_style = backup'),
])
def test_live_style_says_why(conf, style, backup_api, transient, reason):
    _, why = local.live_choice(job(conf, style, backup_api, transient))
    assert reason in why


@pytest.mark.parametrize('style,reason', [
    ('backup', 'live_copy_style is backup but libvirt and QEMU here have '
               'no backup API'),
    ('blockcopy', 'live_copy_style is blockcopy but this libvirt has no '
                  'transient block copy jobs'),
])
def test_a_style_the_host_lacks_is_refused(conf, style, reason):
    with pytest.raises(exception.LiveSnapshotImpossible, match=reason):
        local.live_style(job(conf, style, False, False))


# -- the end of the job (issue 22 item 6) ------------------------------
class StuckJob(backup.BackupCalls):
    """A domain whose backup job serves ``socket`` and never ends."""

    def __init__(self, socket):
        self.name, self.host, self.socket = 'g', None, socket
        self.aborts = 0

    def backup_socket(self):
        return self.socket

    def _call(self, action, method, *args, **kwargs):
        assert method == 'abortJob'
        self.aborts += 1


def test_a_backup_job_that_does_not_end_is_an_error():
    g = StuckJob('/run/s/sock')
    with pytest.raises(exception.LibvirtFailed, match='still there'):
        g.backup_end(backup.Export(socket='/run/s/sock', scratch={}),
                     timeout=0.2)
    assert g.aborts == 1


class EndingGuest:
    name = 'g'

    def __init__(self, ends):
        self.ends = ends

    def backup_end(self, export, timeout):
        if not self.ends:
            raise exception.LibvirtFailed(action='end the backup job of',
                                          guest='g', reason='still there')


@pytest.mark.parametrize('fails', [False, True])
def test_the_job_step_stays_pending_while_the_job_is_there(tmp_path,
                                                           fails):
    export = backup.Export(socket='/run/s/sock', scratch={'vda': '/x'})
    with pytest.raises(exception.SnapshotError) as raised:
        with journal.opened(str(tmp_path), 'u', 'g', 'qemu:///system',
                            None, 'snap') as j:
            with backup_backend._job(EndingGuest(ends=False), export):
                if fails:
                    raise exception.ConversionFailed(reason='first')
    # The first error is the one reported; the job is left to recover.
    assert ('first' in str(raised.value)) == fails
    [step] = journal.read(os.path.join(tmp_path, 'snap.json')).steps
    assert (step.kind, step.done) == (journal.BACKUP_JOB, False)
    assert j.pending() == [step]


def test_the_job_step_is_done_once_the_job_is_gone(tmp_path):
    export = backup.Export(socket='/run/s/sock', scratch={'vda': '/x'})
    with journal.opened(str(tmp_path), 'u', 'g', 'qemu:///system', None,
                        'snap') as j:
        with backup_backend._job(EndingGuest(ends=True), export):
            pass
        assert [s.done for s in j.steps] == [True]


class QemuOf:
    """A guest whose QEMU runs as ``uid``:``gid``."""

    name = 'g'

    def __init__(self, uid, gid):
        self.owner = (uid, gid)

    def qemu_owner(self):
        return self.owner


def _as_nobody(func):
    """``func()`` in a child process of user nobody (its group only):
    its result, or the message of the SnapshotError it raised.
    """
    nobody = pwd.getpwnam('nobody')
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        result = 'died'
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            result = func()
        except exception.SnapshotError as e:
            result = e.message
        except BaseException as e:  # noqa: B902 - reported to the parent
            result = repr(e)
        finally:
            os.write(w, repr(result).encode())
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    os.waitpid(pid, 0)
    return text


@pytest.fixture
def nobodys(tmp_path):
    """A directory of user nobody that nobody reaches."""
    nobody = pwd.getpwnam('nobody')
    path = tempfile.mkdtemp(prefix='nse-test-')
    os.chmod(path, 0o755)
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    yield path, nobody
    shutil.rmtree(path)


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to become nobody')
def test_the_socket_directory_is_qemus_or_the_snapshot_says_why(nobodys):
    path, nobody = nobodys
    # Root gives it to QEMU's user.
    made = backup_backend._export(QemuOf(nobody.pw_uid, nobody.pw_gid),
                                  ['vda'], path, path)
    sockdir = os.path.dirname(made.socket)
    st = os.stat(sockdir)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
        nobody.pw_uid, nobody.pw_gid, 0o700)
    os.rmdir(sockdir)

    def export(uid, gid):
        made = backup_backend._export(QemuOf(uid, gid), ['vda'], path, path)
        st = os.stat(os.path.dirname(made.socket))
        os.rmdir(os.path.dirname(made.socket))
        return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)

    # A user that is not root: QEMU as itself; QEMU of its group; QEMU of
    # another group, which it may not give a directory to.
    assert _as_nobody(lambda: export(nobody.pw_uid, 0)) == repr(
        (nobody.pw_uid, nobody.pw_gid, 0o700))
    assert _as_nobody(lambda: export(0, nobody.pw_gid)) == repr(
        (nobody.pw_uid, nobody.pw_gid, 0o730))
    assert _as_nobody(lambda: export(0, 0)) == repr(
        'A live snapshot of g is not possible: QEMU runs as uid 0 gid 0, '
        'and this user (uid %d) can give it no directory for the NBD '
        'socket of a backup job: make it a member of group 0, or run as '
        'root. Use --method cold or --method auto.' % nobody.pw_uid)


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to become nobody')
def test_a_user_that_cannot_share_the_socket_mirrors_instead(conf):
    # NOTE: as a nova-compute not in QEMU's group: the backup job's
    # socket is out of reach, so auto takes a block copy, and says why.
    def choice(style):
        j = job(conf, style, True, True)
        j.guest = FakeGuest(True, qemu=(64055, 64055))
        return local.live_choice(j)

    style, why = ast.literal_eval(_as_nobody(lambda: choice('auto')))
    assert style == 'blockcopy'
    assert why == (
        'QEMU runs as uid 64055 gid 64055, and this user (uid %d) is not '
        'in group 64055, so it can share no directory with QEMU for the '
        'NBD socket of a backup job: a mirror into a delta'
        % pwd.getpwnam('nobody').pw_uid)
    assert 'live_copy_style is backup but QEMU runs as uid 64055' in (
        _as_nobody(lambda: choice('backup')))
    # Root shares it whatever QEMU's user.
    assert choice('auto')[0] == 'backup'
