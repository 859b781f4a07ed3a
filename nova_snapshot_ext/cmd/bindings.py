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

"""``nova-snapshot-ext-link-bindings [VENV]``: Debian's Ceph and libnbd
bindings made importable in a virtual environment, a step of the install.

``rados`` and ``rbd`` (the Ceph backend, ``gc``) and ``nbd`` (incremental
snapshots) are not on PyPI: Debian builds them (``python3-rados``,
``python3-rbd``, ``python3-libnbd``) for its CPython 3.11 only. This links
those modules, and nothing else of Debian's ``dist-packages``, into the
venv's ``site-packages`` (by default the venv of the Python running it),
then imports them there to prove it. A module Debian lacks is one line
naming its package; ``--only`` limits the set (e.g. ``--only nbd`` on a
host without Ceph).
"""

import argparse
import glob
import os
import subprocess
import sys
import sysconfig

#: Where Debian installs its Python 3 modules.
DEBIAN = '/usr/lib/python3/dist-packages'
#: Module -> (files to link, Debian package).
MODULES = {
    'rados': (('rados.cpython-311-*.so',), 'python3-rados'),
    'rbd': (('rbd.cpython-311-*.so',), 'python3-rbd'),
    'nbd': (('nbd.py', 'libnbdmod.cpython-311-*.so'), 'python3-libnbd'),
}


class Missing(Exception):
    pass


def site_of(venv: str | None) -> tuple[str, str]:
    """The ``site-packages`` and the Python of ``venv`` (a venv's
    directory, or a ``site-packages`` directory), or of this Python.
    """
    if venv is None:
        return sysconfig.get_path('purelib'), sys.executable
    python = os.path.join(venv, 'bin', 'python')
    if not os.access(python, os.X_OK):
        return venv, sys.executable
    site = subprocess.run(
        [python, '-c', 'import sysconfig; print(sysconfig.get_path('
                       '"purelib"))'],
        capture_output=True, text=True, check=True).stdout.strip()
    return site, python


def link(site: str, modules: list[str], source: str = DEBIAN) -> list[str]:
    """Link the files of ``modules`` from ``source`` into ``site``; the
    links made.

    :raises Missing: one line naming the Debian package to install.
    """
    made = []
    for module in modules:
        patterns, package = MODULES[module]
        for pattern in patterns:
            found = sorted(glob.glob(os.path.join(source, pattern)))
            if not found:
                raise Missing('%s has no %s for CPython 3.11: install %s' % (
                    source, pattern, package))
            dest = os.path.join(site, os.path.basename(found[0]))
            if os.path.lexists(dest):
                os.unlink(dest)
            os.symlink(found[0], dest)
            made.append(dest)
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='nova-snapshot-ext-link-bindings',
        description='Link Debian\'s rados, rbd and nbd modules into a venv.')
    parser.add_argument('venv', nargs='?', metavar='VENV',
                        help='the venv (or its site-packages); default: '
                             'the one of this Python')
    parser.add_argument('--only', action='append', choices=sorted(MODULES),
                        help='link only this module (repeatable)')
    args = parser.parse_args(argv)
    modules = args.only or sorted(MODULES)
    try:
        site, python = site_of(args.venv)
        made = link(site, modules)
        subprocess.run([python, '-c', 'import %s' % ', '.join(modules)],
                       capture_output=True, text=True, check=True)
    except Missing as e:
        print('nova-snapshot-ext-link-bindings: %s' % e, file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        lines = (e.stderr or '').strip().splitlines()
        print('nova-snapshot-ext-link-bindings: %s cannot import them: %s' % (
            e.cmd[0], lines[-1] if lines else e), file=sys.stderr)
        return 1
    for path in made:
        print('linked %s' % path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
