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

"""The ``nova-snapshot-ext`` command.

Its arguments are in :mod:`.parser`; the synopses in README.rst and
doc/source/cli.rst are held to it by tests/unit/test_docs.py.

Exit status: 0 done, 1 the snapshot (or a gc or recover action) failed,
or the image verified is damaged (one line on stderr says why), 2 bad
usage, 130 and 143 cancelled by SIGINT and SIGTERM (what the snapshot had
made is undone).
"""

import argparse
from collections.abc import Callable, Iterator, Sequence
import contextlib
import dataclasses
import json
import logging as std_logging
import signal
import sys
from typing import Any, TextIO

import libvirt
from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext import catalog
from nova_snapshot_ext.cleanup import gc as gc_mod
from nova_snapshot_ext.cleanup import recovery
from nova_snapshot_ext.cmd import images
from nova_snapshot_ext.cmd import parser as parser_mod
from nova_snapshot_ext.cmd import progress as progress_mod
from nova_snapshot_ext.cmd import summary
from nova_snapshot_ext import conf as nse_conf
from nova_snapshot_ext import exception
from nova_snapshot_ext import explain
from nova_snapshot_ext.journal import cancel as cancel_mod
from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext import snapshot
from nova_snapshot_ext.stores import base as store_base
from nova_snapshot_ext import verify

PROG = parser_mod.PROG
LOG = logging.getLogger(__name__)
build_parser = parser_mod.build_parser


def _setup(parser: argparse.ArgumentParser,
           args: argparse.Namespace) -> None:
    conf = nse_conf.CONF
    files = args.config_file + args.sub_config_file
    conf_args = []
    for f in files:
        conf_args += ['--config-file', f]
    # Without --config-file, oslo.config reads the default locations.
    try:
        conf(conf_args, project='nova-snapshot-ext', prog=PROG)
    except cfg.ConfigFilesNotFoundError as e:
        parser.error('cannot read the configuration file %s (no such file, '
                     'or not readable)' % ', '.join(e.config_files))
    except cfg.ConfigFileParseError as e:
        parser.error('cannot parse the configuration file %s: %s' % (
            e.config_file, e.msg))
    conf.set_override('use_stderr', True)
    for opt in ('logging_default_format_string',
                'logging_context_format_string'):
        conf.set_default(opt, '%(levelname)s: %(message)s')
    if args.debug:
        conf.set_override('debug', True)
    logging.setup(conf, 'nova-snapshot-ext')
    if not (args.verbose or args.debug):
        std_logging.getLogger().setLevel(std_logging.WARNING)
        # NOTE: keystoneauth warns at each retry of a connection, in
        # lines of hundreds of characters; the command says once, in its
        # own error, that the store could not be reached.
        std_logging.getLogger('keystoneauth').setLevel(std_logging.ERROR)
    connect = args.sub_connect or args.connect
    if connect:
        conf.set_override('connection_uri', connect,
                          group='snapshot_libvirt')


#: Exit status of a command cancelled by a signal (128 + its number).
SIGNAL_EXIT = {'SIGINT': 130, 'SIGTERM': 143}


@contextlib.contextmanager
def _cancel_on_signals(cancel: cancel_mod.Cancel) -> Iterator[None]:
    """SIGINT and SIGTERM ask ``cancel`` to stop the snapshot at its next
    safe point (see :mod:`nova_snapshot_ext.journal.cancel`); the handler
    itself never raises, so that no undo is cut short.
    """
    def handler(signum: int, frame: object) -> None:
        cancel.request(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, handler)
           for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def cmd_snapshot(args: argparse.Namespace, out: TextIO) -> int:
    conf = nse_conf.CONF
    request = snapshot.SnapshotRequest(
        guest=args.domain, name=args.name, method=args.method,
        image_format=args.image_format, store=args.store,
        quiesce=args.quiesce, image_id=args.image_id,
        metadata=dict(args.properties), all_disks=args.all_disks,
        incremental=args.incremental, keep=args.keep, memory=args.memory)
    snapshot.validate_properties(request.metadata)
    if args.expire_after:
        request.metadata['expires_at'] = catalog.expiry(args.expire_after)
    if args.timeout:
        cancel = cancel_mod.Cancel(args.timeout, '--timeout')
    else:
        cancel = cancel_mod.Cancel(conf.snapshot.timeout)
    try:
        with _cancel_on_signals(cancel), \
                progress_mod.bar(sys.stderr) as report:
            result = snapshot.take_snapshot(request, progress=report,
                                            cancel=cancel, host_slots=True)
    except exception.SnapshotCancelled as e:
        sys.stderr.write('%s: error: %s\n' % (PROG, e))
        return SIGNAL_EXIT.get(cancel.reason or '', 1)
    except exception.SnapshotError as e:
        if cancel.reason not in SIGNAL_EXIT:
            raise
        # NOTE: Ctrl-C reaches the whole process group: qemu-img may have
        # died of it before the snapshot saw its own cancellation.
        LOG.debug('Cancelled snapshot failed: %s', e)
        cancelled = exception.SnapshotCancelled(guest=args.domain,
                                                reason=cancel.reason)
        sys.stderr.write('%s: error: %s\n' % (PROG, cancelled))
        return SIGNAL_EXIT[cancel.reason]
    if args.json or args.sub_json:
        json.dump(result.as_dict(), out, sort_keys=True)
        out.write('\n')
    else:
        out.write(summary.summary(result) + '\n')
    return 0


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    if args.nova:
        return _check_nova(args, out)
    conf = nse_conf.CONF
    host = host_mod.Host(conf.snapshot_libvirt.connection_uri)
    try:
        report = explain.check(conf, host, args.domain, args.store)
    finally:
        host.close()
    if args.json or args.sub_json:
        json.dump(report, out, sort_keys=True)
        out.write('\n')
        return 0
    h = report['host']
    out.write('host: %s, libvirt %s, QEMU %s, live snapshots %s\n' % (
        h['uri'], h['libvirt_version'], h['qemu_version'],
        'possible' if h['live_possible'] else 'off: ' + h['live_off']))
    for g in report['guests']:
        if 'error' in g:
            out.write('%s: %s\n' % (g['name'], g['error']))
            continue
        out.write('%(name)s: %(state)s, %(backend)s disk %(disk)s -> '
                  '%(method)s: %(reason)s\n' % g)
    return 0


def _check_nova(args: argparse.Namespace, out: TextIO) -> int:
    """``check --nova``: Nova is imported only here, where it must be."""
    try:
        from nova_snapshot_ext.virt import preflight
    except ImportError as e:
        raise exception.InvalidInput(
            reason='check --nova runs in nova-compute\'s Python '
                   'environment, and Nova is not in this one (%s): %s' % (
                       sys.prefix, e))
    findings = preflight.check(args.nova_config or ['/etc/nova/nova.conf'],
                               args.user)
    if args.json or args.sub_json:
        json.dump({'findings': [dataclasses.asdict(f) for f in findings]},
                  out, sort_keys=True)
        out.write('\n')
    else:
        out.write(''.join(f.line() + '\n' for f in findings))
    return 0 if all(f.ok for f in findings) else 1


def _report(args: argparse.Namespace, out: TextIO, actions: list[Any],
            line: Callable[[Any], str],
            error_line: Callable[[Any], str]) -> int:
    """Print what gc or recover did (JSON, or a line each) and, on
    standard error, what failed; the exit status.
    """
    if args.json or args.sub_json:
        json.dump({'dry_run': args.dry_run,
                   'actions': [a.as_dict() for a in actions]}, out,
                  sort_keys=True)
        out.write('\n')
    else:
        for a in actions:
            out.write(line(a) + '\n')
        if not actions:
            out.write('nothing to do\n')
    failed = [a for a in actions if a.error]
    for a in failed:
        sys.stderr.write('%s: error: %s\n' % (PROG, error_line(a)))
    return 1 if failed else 0


def cmd_gc(args: argparse.Namespace, out: TextIO) -> int:
    conf = nse_conf.CONF
    actions = gc_mod.collect_garbage(
        conf, store_base.load(conf, args.store), dry_run=args.dry_run,
        min_age=args.min_age)
    return _report(args, out, actions, lambda a: a.line(args.dry_run),
                   lambda a: 'could not %s %s: %s' % (a.verb, a.target,
                                                      a.error))


def cmd_recover(args: argparse.Namespace, out: TextIO) -> int:
    conf = nse_conf.CONF
    connect = args.sub_connect or args.connect
    actions = recovery.recover(conf, dry_run=args.dry_run, uri=connect)
    return _report(args, out, actions, lambda a: a.line(args.dry_run),
                   lambda a: a.line())


def cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    conf = nse_conf.CONF
    report = verify.verify(conf, store_base.load(conf, args.store),
                           args.image)
    if args.json or args.sub_json:
        json.dump(report.as_dict(), out, sort_keys=True)
        out.write('\n')
    elif report.ok:
        out.write(summary.verified(report) + '\n')
    if not report.ok:
        sys.stderr.write('%s: error: %s is damaged: %s\n' % (
            PROG, args.image, report.problem))
        return 1
    return 0


COMMANDS = {'snapshot': cmd_snapshot, 'check': cmd_check, 'gc': cmd_gc,
            'recover': cmd_recover, 'verify': cmd_verify, **images.COMMANDS}


def _quiet_libvirt(ctx: object, error: object) -> None:
    pass


def main(argv: Sequence[str] | None = None,
         out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    # NOTE: by default libvirt prints every error on stderr, even those
    # handled; the command reports errors itself, once. Set here, not at
    # import: it is process-wide, and the library also runs inside
    # nova-compute.
    libvirt.registerErrorHandler(_quiet_libvirt, None)
    try:
        _setup(parser, args)
        return COMMANDS[args.command](args, out)
    except exception.SnapshotError as e:
        sys.stderr.write('%s: error: %s\n' % (PROG, e))
        return 1
    except KeyboardInterrupt:
        sys.stderr.write('%s: interrupted; the guest and the store were '
                         'left as they were\n' % PROG)
        return 130
    except Exception as e:  # noqa: B902 - the last line of defence
        if args.debug:
            raise
        LOG.debug('Unexpected error', exc_info=True)
        sys.stderr.write('%s: error: unexpected %s: %s (run with --debug '
                         'for details)\n' % (PROG, type(e).__name__,
                                             ' '.join(str(e).split())))
        return 1


if __name__ == '__main__':
    sys.exit(main())
