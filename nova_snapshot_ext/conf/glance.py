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

"""Options of the Glance image store ([snapshot_glance]).

The group holds keystoneauth's own auth, session (TLS) and adapter
(endpoint) options, so every keystoneauth auth plugin (password, token,
application credential, ...) is configured the standard way, plus the
store's own options below.
"""

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

GROUP = 'snapshot_glance'

glance_group = cfg.OptGroup(
    GROUP,
    title='Glance image store',
    help="""
How the ``glance`` image store reaches Glance: keystoneauth auth, session
(TLS) and adapter (endpoint) options, and how images are made.

For a Glance without Keystone, leave ``auth_type`` unset and set
``endpoint_override``, or name the endpoint on the command line with
``--store glance+http://HOST:PORT``.
""")

glance_opts = [
    cfg.StrOpt(
        'visibility',
        deprecated_group='glance',
        default='private',
        choices=['private', 'shared', 'community', 'public'],
        help="""
Visibility of the images the store creates. A record created beforehand
(Nova's) keeps its own.
"""),
    cfg.BoolOpt(
        'verify_hash',
        deprecated_group='glance',
        default=True,
        help="""
Compare the hash Glance computes of the uploaded data (``os_hash_value``)
with the hash computed while sending it, and delete the image when they
differ.
"""),
    cfg.IntOpt(
        'active_timeout',
        deprecated_group='glance',
        default=60,
        min=1,
        help="""
Seconds to wait, after the upload, for the image to become ``active``.
"""),
    cfg.IntOpt(
        'request_attempts',
        default=4,
        min=1,
        help="""
Tries of each request to Glance other than the upload (the check that Glance
answers, making, reading, updating and deleting the record) when Glance
cannot be reached or answers with a 5xx status, with pauses of
``retry_interval``, 2 x ``retry_interval``, ... (at most 10 s) between
them. The upload itself is sent once: a failed upload fails the snapshot
and its record is deleted.

Related options:

* ``connect_retries``: keystoneauth's own retries of a connection, inside
  each try (0 by default).
"""),
    cfg.FloatOpt(
        'retry_interval',
        default=1.0,
        min=0.01,
        help="""
Seconds before the second try of a request to Glance (see
``request_attempts``); each further pause is twice the one before.
"""),
]

#: Seconds a request to Glance may wait for an answer, or for Glance to
#: take more of an upload, unless ``[snapshot_glance] timeout`` says
#: otherwise. keystoneauth's own default is to wait forever.
DEFAULT_TIMEOUT = 60
#: The longest pause between two tries of a request.
MAX_RETRY_INTERVAL = 10

# NOTE: the store tries requests again itself (request_attempts), after
# a 5xx as after a connection error, and never the streamed upload (its
# body cannot be rewound); keystoneauth's retries of a connection would
# only multiply the tries.
DEFAULT_CONNECT_RETRIES = 0


def _adapter_opts() -> list[cfg.Opt]:
    opts = ks_loading.get_adapter_conf_options(include_deprecated=False)
    for opt in opts:
        if opt.dest == 'service_type':
            opt.default = 'image'
        elif opt.dest == 'connect_retries':
            opt.default = DEFAULT_CONNECT_RETRIES
    return opts


def _session_opts() -> list[cfg.Opt]:
    opts = ks_loading.get_session_conf_options()
    for opt in opts:
        if opt.dest == 'timeout':
            opt.default = DEFAULT_TIMEOUT
    return opts


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(cfg.OptGroup(GROUP, title=glance_group.title,
                                     help=glance_group.help))
    conf.register_opts(glance_opts, group=GROUP)
    conf.register_opts(_session_opts(), group=GROUP)
    ks_loading.register_auth_conf_options(conf, GROUP)
    conf.register_opts(_adapter_opts(), group=GROUP)


def list_opts() -> dict:
    # NOTE: the options of one auth plugin (password) stand for all of
    # them in the sample; keystoneauth registers the configured plugin's
    # own options when it loads it.
    return {glance_group: (
        glance_opts
        + _session_opts()
        + ks_loading.get_auth_common_conf_options()
        + ks_loading.get_auth_plugin_conf_options('password')
        + _adapter_opts())}
