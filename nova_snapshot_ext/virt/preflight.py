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

"""``nova-snapshot-ext check --nova``: what would stop the driver on this
compute host, found before its first snapshot (a canary's first step, and
the check after a Nova upgrade that rebuilt nova-compute's environment).

Run in nova-compute's Python environment, with nova-compute's
configuration files, it checks:

* **shim**: ``nova.virt.nova_snapshot_ext`` is installed in Nova's tree and
  loads the driver (a rebuilt venv or image drops it);
* **driver**: ``[DEFAULT] compute_driver`` names it;
* **options**: every option of the engine in those files has a valid
  value;
* **directories**: ``state_path``, ``[snapshot] lock_path``,
  ``journal_directory`` and ``temp_directory`` are writable by
  nova-compute's user (``--user``), or can be made by it;
* **libvirt**: the driver's libvirt answers;
* **ceph**: with ``[libvirt] images_type = rbd``, the cluster answers as
  ``[snapshot_rbd] user``;
* **glance**: each ``[glance] api_servers`` endpoint answers.

Each finding is one line; any failure makes the command exit 1.
"""

import dataclasses
import importlib
import json
import os
import pwd
import sys
from typing import Any
import urllib.error
import urllib.request

from nova import conf as nova_conf
from oslo_config import cfg

from nova_snapshot_ext.conf import opts as nse_opts
from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext.storage import rbd_connection
from nova_snapshot_ext.virt import settings

DRIVER = 'nova_snapshot_ext.SnapshotLibvirtDriver'


@dataclasses.dataclass
class Finding:
    what: str
    ok: bool
    detail: str

    def line(self) -> str:
        return '%-4s %-11s %s' % ('ok' if self.ok else 'FAIL', self.what,
                                  self.detail)


def check(config_files: list[str], user: str | None) -> list[Finding]:
    """The findings, in the order of the module's list."""
    found = [_shim()]
    conf = nova_conf.CONF
    conf([], project='nova', default_config_files=config_files,
         default_config_dirs=[])
    driver = conf.compute_driver
    found.append(Finding('driver', driver == DRIVER, 'compute_driver = %s%s'
                         % (driver, '' if driver == DRIVER else
                            ' (set it to %s)' % DRIVER)))
    uri = conf.libvirt.connection_uri or 'qemu:///system'
    engine = settings.engine_conf(conf, uri)
    found.append(_options(engine))
    found.append(_directories(engine, user))
    found.append(_libvirt(uri))
    if conf.libvirt.images_type == 'rbd':
        found.append(_ceph(engine))
    found.extend(_glance(url) for url in conf.glance.api_servers or [])
    return found


def _shim() -> Finding:
    try:
        shim = importlib.import_module('nova.virt.nova_snapshot_ext')
        loaded = shim.SnapshotLibvirtDriver
    except Exception as e:  # noqa: B902 - any reason is the finding
        return Finding('shim', False, 'nova.virt.nova_snapshot_ext does not '
                       'load (%s): install nova-snapshot-ext again into '
                       'nova-compute\'s environment (%s)' % (e, sys.prefix))
    return Finding('shim', True, 'nova.virt.nova_snapshot_ext loads %s.%s' % (
        loaded.__module__, loaded.__name__))


def _options(engine: Any) -> Finding:
    bad = []
    for group, opts in nse_opts.list_opts():
        name = getattr(group, 'name', group)
        for opt in opts:
            try:
                section = engine if name == 'DEFAULT' else engine[name]
                getattr(section, opt.dest)
            except (cfg.NoSuchOptError, cfg.NoSuchGroupError):
                continue  # not one the driver registers
            except Exception as e:  # noqa: B902 - oslo.config's kinds
                bad.append('[%s] %s: %s' % (name, opt.name, e))
    return Finding('options', not bad, '; '.join(bad) or
                   'every option of the engine has a valid value')


def _directories(engine: Any, user: str | None) -> Finding:
    paths = [engine.state_path, engine.snapshot.lock_path,
             engine.snapshot.journal_directory,
             engine.snapshot.temp_directory]
    name = user or pwd.getpwuid(os.geteuid()).pw_name
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return Finding('directories', False, 'no user %s here (--user)' %
                       name)
    bad = _unwritable_as(entry, paths)
    return Finding('directories', not bad, '; '.join(
        '%s: %s cannot write %s' % (path, name, probe)
        for path, probe in bad) or '%s can write %s' % (name, ', '.join(
            paths)))


def _unwritable_as(entry: pwd.struct_passwd,
                   paths: list[str]) -> list[list[str]]:
    """Which of ``paths`` the user ``entry`` can neither write nor make
    (with the directory it would have to write instead), as seen by a
    child process that becomes that user.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(read)
            os.setgroups(os.getgrouplist(entry.pw_name, entry.pw_gid))
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            bad = []
            for path in paths:
                probe = path
                while not os.path.exists(probe):
                    probe = os.path.dirname(probe)
                if not os.access(probe, os.W_OK | os.X_OK):
                    bad.append([path, probe])
            os.write(write, json.dumps(bad).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as f:
        answer = f.read()
    _, status = os.waitpid(pid, 0)
    if status:
        return [[p, '(could not become %s)' % entry.pw_name] for p in paths]
    return json.loads(answer)


def _libvirt(uri: str) -> Finding:
    host = host_mod.Host(uri)
    try:
        version = host.libvirt_version()
    except exception.SnapshotError as e:
        return Finding('libvirt', False, str(e))
    finally:
        host.close()
    return Finding('libvirt', True, '%s answers (libvirt %s)' % (
        uri, '.'.join(map(str, version))))


def _ceph(engine: Any) -> Finding:
    conn = rbd_connection.Connection(engine)
    try:
        conn.cluster()
    except exception.SnapshotError as e:
        return Finding('ceph', False, str(e))
    finally:
        conn.close()
    return Finding('ceph', True, '%s answers' % conn)


def _glance(url: str) -> Finding:
    try:
        urllib.request.urlopen(url, timeout=10).close()
    except urllib.error.HTTPError as e:
        # NOTE: an answer at all (the version list is a 300) is reachable.
        return Finding('glance', True, '%s answers (HTTP %d)' % (url, e.code))
    except (OSError, ValueError) as e:
        return Finding('glance', False, '%s does not answer: %s' % (
            url, getattr(e, 'reason', e)))
    return Finding('glance', True, '%s answers' % url)
