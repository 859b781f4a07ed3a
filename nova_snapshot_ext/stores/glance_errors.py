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

"""What glanceclient's and keystoneauth's errors mean for a snapshot.

:func:`translated` turns them into the engine's exceptions (see
:class:`~nova_snapshot_ext.stores.image_calls.ImageAPI`), one line each;
:func:`never_sent` tells a request that never reached Glance (no
connection could be made) from one that may have.
"""

from collections.abc import Iterator
import contextlib
import re
import socket

from glanceclient import exc as glance_exc
from keystoneauth1 import exceptions as ksa_exc

from nova_snapshot_ext import exception


def one_line(e: BaseException) -> str:
    text = getattr(e, 'details', None) or str(e) or type(e).__name__
    return ' '.join(str(text).split())


def status_code(e: glance_exc.HTTPException) -> int | None:
    """The HTTP status of ``e``. glanceclient has classes for some codes
    only; for the others (415 among them) the code leads the details.
    """
    code = getattr(e, 'code', None)
    if isinstance(code, int):
        return code
    match = re.match(r'\s*(\d{3})\b', str(getattr(e, 'details', '')))
    return int(match.group(1)) if match else None


def never_sent(e: BaseException) -> bool:
    """Whether ``e`` (our error, raised while glanceclient's or
    keystoneauth's was handled) comes from a connection that could not be
    made: the request never reached Glance.
    """
    seen: list[BaseException] = []
    todo: list[object] = [e]
    while todo:
        x = todo.pop()
        if not isinstance(x, BaseException) or x in seen:
            continue
        if isinstance(x, (ConnectionRefusedError, socket.gaierror)):
            # NOTE: raised by connect() only, and beneath urllib3's
            # NewConnectionError: nothing was sent.
            return True
        seen.append(x)
        todo += [x.__cause__, x.__context__, getattr(x, 'reason', None),
                 *x.args]
    return False


def http_reason(e: glance_exc.HTTPException, code: int | None) -> str:
    details = one_line(e)
    if code is None or details.startswith(str(code)):
        return 'HTTP %s' % details
    return 'HTTP %s %s' % (code, details)


@contextlib.contextmanager
def translated(store: object, image_id: str | None = None,
               disk_format: str | None = None) -> Iterator[None]:
    """Translate glanceclient's and keystoneauth's errors into ours."""
    try:
        yield
    except (glance_exc.CommunicationError, glance_exc.InvalidEndpoint,
            ksa_exc.ConnectionError, ksa_exc.EndpointNotFound,
            ksa_exc.DiscoveryFailure) as e:
        raise exception.StoreUnavailable(
            store=store, reason='unreachable (%s)' % one_line(e))
    except (ksa_exc.Unauthorized, ksa_exc.Forbidden) as e:
        # NOTE: keystone itself refused (wrong password, ...).
        raise exception.StoreAuthFailed(
            store=store, reason='HTTP %s %s' % (e.http_status, one_line(e)))
    except glance_exc.HTTPException as e:
        code = status_code(e)
        reason = http_reason(e, code)
        if code in (401, 403):
            raise exception.StoreAuthFailed(store=store, reason=reason)
        if code == 404:
            if image_id is None:
                raise exception.StoreUnavailable(store=store, reason=reason)
            raise exception.ImageNotFound(image=image_id, store=store)
        if code == 413:
            raise exception.StoreRejected(
                store=store,
                reason='over a size limit or quota (%s)' % reason)
        if code == 415:
            raise exception.StoreRejected(
                store=store,
                reason='Glance does not accept its data as %s (%s)' % (
                    disk_format or 'its disk_format', reason))
        if code == 409:
            raise exception.StoreRejected(store=store, reason=reason)
        if code is not None and code >= 500:
            # NOTE: a server-side error; worth retrying a delete.
            raise exception.StoreUnavailable(store=store, reason=reason)
        raise exception.StoreWriteFailed(store=store, reason=reason)
    except ksa_exc.ClientException as e:
        raise exception.StoreUnavailable(store=store, reason=one_line(e))
