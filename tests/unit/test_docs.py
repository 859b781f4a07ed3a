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

"""The synopses of ``nova-snapshot-ext`` in README.rst and
doc/source/cli.rst say what its parser takes: each subcommand with its
positional arguments and exactly its own options (their values, and
brackets around the optional ones), and a "Global options" paragraph
with exactly the command's global options.
"""

import argparse
import pathlib
import re

import pytest

from nova_snapshot_ext.cmd import parser as parser_mod

TOP = pathlib.Path(__file__).resolve().parents[2]
DOCS = ['README.rst', 'doc/source/cli.rst']

#: An option in a synopsis: an opening bracket before it or not, its
#: name, and the word after it when that is its value.
OPTION = re.compile(r'(\[?)(-{1,2}[a-z][a-z-]*)'
                    r'(?:[ \t]+([^\s\[\]-][^\s\[\]]*))?')


def _parser():
    return parser_mod.build_parser()


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    raise AssertionError('no subcommands')


def _options(parser):
    """{option string: (expected value or None, required)} of the
    options ``parser`` shows (help and hidden options left out).
    """
    options = {}
    for action in parser._actions:
        if (not action.option_strings or action.help == argparse.SUPPRESS
                or isinstance(action, argparse._HelpAction)):
            continue
        if action.nargs == 0:
            value = None
        elif action.choices:
            value = '|'.join(action.choices)
        else:
            value = action.metavar or action.dest.upper()
        for opt in action.option_strings:
            options[opt] = (value, action.required)
    return options


def _positionals(parser):
    return ['[%s]' % a.metavar if a.nargs == '?' else a.metavar
            for a in parser._actions if not a.option_strings]


def _synopses(text):
    """{subcommand: its synopsis, continuation lines joined} of the
    indented ``nova-snapshot-ext SUBCOMMAND ...`` lines of ``text``.
    """
    synopses = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r'( +)nova-snapshot-ext ([a-z]+)\b(.*)', line)
        if not m:
            continue
        indent, command, rest = m.groups()
        for more in lines[i + 1:]:
            if not more.strip() or (len(more) - len(more.lstrip())
                                    <= len(indent)):
                break
            rest += ' ' + more.strip()
        assert command not in synopses, 'two synopses of %s' % command
        synopses[command] = rest
    return synopses


def _found(synopsis):
    return {name: (value or None, not bracket)
            for bracket, name, value in OPTION.findall(synopsis)}


def _global_paragraph(text):
    m = re.search(r'^Global options\b(.*?)(?:\n\n|\Z)', text,
                  re.M | re.S)
    assert m, 'no "Global options" paragraph'
    found = {}
    for literal in re.findall(r'``(-[^`]*)``', m.group(1)):
        words = literal.split()
        found[words[0]] = words[1] if len(words) > 1 else None
    return found


@pytest.fixture(params=DOCS)
def doc(request):
    return request.param, (TOP / request.param).read_text()


def test_every_subcommand_has_a_synopsis(doc):
    name, text = doc
    assert sorted(_synopses(text)) == sorted(_subparsers(_parser())), name


def test_synopsis_options_are_the_parsers(doc):
    name, text = doc
    synopses = _synopses(text)
    for command, sub in _subparsers(_parser()).items():
        expected = _options(sub)
        found = _found(synopses.get(command, ''))
        assert sorted(found) == sorted(expected), (
            '%s: the synopsis of %s lists %s, its parser takes %s' % (
                name, command, sorted(found), sorted(expected)))
        for opt, (value, required) in expected.items():
            assert found[opt] == (value, required), (
                '%s: %s %s is written %r, the parser takes %r '
                '(value, required)' % (name, command, opt, found[opt],
                                       (value, required)))


def test_synopsis_positionals_are_the_parsers(doc):
    name, text = doc
    synopses = _synopses(text)
    for command, sub in _subparsers(_parser()).items():
        words = []
        for word in synopses.get(command, '').split():
            if word.lstrip('[').startswith('-'):
                break
            words.append(word)
        assert words == _positionals(sub), '%s: %s' % (name, command)


def test_global_options_are_the_parsers(doc):
    name, text = doc
    parser = _parser()
    expected = {opt: value for opt, (value, _) in _options(parser).items()}
    found = _global_paragraph(text)
    assert found == expected, '%s: global options' % name


def test_found_options():
    # The reading of a synopsis itself.
    assert _found('DOMAIN --name NAME [--method auto|live] [--all-disks] '
                  '[--incremental [--keep N]] [--property K=V ...]') == {
        '--name': ('NAME', True), '--method': ('auto|live', False),
        '--all-disks': (None, False), '--incremental': (None, False),
        '--keep': ('N', False), '--property': ('K=V', False)}
