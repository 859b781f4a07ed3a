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

"""A stand-in for keystonemiddleware in the project's test Glance.

Glance's ``service`` flavor (``tools/glance.sh``) puts this paste filter
where keystonemiddleware would be: a request without identity headers is
taken as coming from a service user (roles admin and member, service role
``service``) of the project ``nse-stack``, as Nova's requests with a
service token are. A request that carries its own ``X-Identity-Status``
keeps its headers.
"""

IDENTITY = {
    'HTTP_X_IDENTITY_STATUS': 'Confirmed',
    'HTTP_X_PROJECT_ID': 'nse-stack',
    'HTTP_X_USER_ID': 'nse-stack',
    'HTTP_X_ROLES': 'admin,member,reader',
    'HTTP_X_SERVICE_ROLES': 'service',
}


def filter_factory(global_conf, **local_conf):
    def wrap(app):
        def middleware(environ, start_response):
            if 'HTTP_X_IDENTITY_STATUS' not in environ:
                environ.update(IDENTITY)
            return app(environ, start_response)
        return middleware
    return wrap
