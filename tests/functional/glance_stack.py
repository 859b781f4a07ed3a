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

"""The project's real Glance, as the functional tests see it.

``tools/stack.sh up`` starts the ``main`` instance; tests that need a
Glance configured otherwise, or one they may stop, start their own with
``tools/glance.sh start NAME``.
"""

import contextlib
import os
import subprocess
import time

import glanceclient
from glanceclient import exc as glance_exc
from keystoneauth1 import noauth
from keystoneauth1 import session as ks_session

from tests.functional import guest as guest_mod
from tests import polling

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
GLANCE_SH = os.path.join(ROOT, 'tools', 'glance.sh')

#: What a Glance of the 'trusted' flavor needs to accept a request: the
#: headers keystonemiddleware would set for a valid token.
MEMBER_HEADERS = {'X-Identity-Status': 'Confirmed', 'X-Roles': 'member',
                  'X-Project-Id': 'p-tests', 'X-User-Id': 'u-tests'}


def glance_sh(*args: str, **env: str) -> str:
    done = subprocess.run(['bash', GLANCE_SH, *args], capture_output=True,
                          text=True, env=dict(os.environ, **env))
    if done.returncode:
        raise guest_mod.StackMissing(
            'tools/glance.sh %s failed: %s' % (' '.join(args),
                                               done.stderr.strip()))
    return done.stdout.strip()


def endpoint(name: str = 'main') -> str:
    """The URL of a running instance.

    :raises StackMissing: it does not run.
    """
    try:
        return glance_sh('endpoint', name)
    except guest_mod.StackMissing as e:
        raise guest_mod.StackMissing(
            '%s: run "tools/stack.sh up" as root first' % e)


def venv_bin(name: str) -> str:
    return os.path.join(guest_mod.stack_dir(), 'glance', 'venv', 'bin',
                        name)


def session(url: str, headers: dict | None = None) -> ks_session.Session:
    return ks_session.Session(auth=noauth.NoAuth(endpoint=url),
                              additional_headers=headers or {})


def client(url: str, headers: dict | None = None):
    """A glanceclient of our own, to look at Glance as a user would."""
    return glanceclient.Client('2', session=session(url, headers),
                               endpoint_override=url)


def image_ids(url: str, headers: dict | None = None) -> list[str]:
    return [i['id'] for i in client(url, headers).images.list()]


def download(url: str, image_id: str, path: str,
             headers: dict | None = None) -> None:
    with open(path, 'wb') as f:
        for chunk in client(url, headers).images.data(image_id):
            f.write(chunk)


def openstack(url: str, *args: str) -> str:
    """The openstack command, as an operator runs it against a Glance
    without Keystone.
    """
    return subprocess.run(
        [venv_bin('openstack'), '--os-auth-type', 'none', '--os-endpoint',
         url, *args], check=True, capture_output=True, text=True).stdout


def delete(url: str, image_id: str, headers: dict | None = None,
           timeout: float = 300) -> None:
    """Delete an image once Glance has hashed it.

    After a location is added Glance 33 hashes the image in the
    background; a delete meanwhile cancels the hash and may answer 500,
    or leave the RBD image open so that deletes time out.
    """
    deadline = time.monotonic() + timeout
    c = client(url, headers)

    def hashed():
        image = c.images.get(image_id)
        return image['status'] != 'active' or image.get('os_hash_value')

    errors = []

    def deleted():
        try:
            client(url, headers).images.delete(image_id)
            return True
        except glance_exc.HTTPInternalServerError as e:
            errors.append(e)
            return False

    with contextlib.suppress(AssertionError):
        # NOTE: not hashed in time: the delete is tried all the same.
        polling.wait_until(hashed, timeout, 0.5, 'not hashed')
    polling.wait_until(deleted, max(0.0, deadline - time.monotonic()), 0.5,
                       lambda: 'Glance did not delete image %s: %s' % (
                           image_id, errors[-1]))
