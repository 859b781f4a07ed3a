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

"""Imports point down: no module imports one of a higher layer, and
nothing below the Nova driver imports Nova.
"""

import ast
import pathlib

import pytest

import nova_snapshot_ext

ROOT = pathlib.Path(nova_snapshot_ext.__file__).parent
PKG = 'nova_snapshot_ext'

#: Layers, lowest first; a module may import its own layer and below.
#: The longest matching prefix decides a module's layer.
LAYERS = [
    ('exception', 'retry', 'plugins', 'conf', 'private'),
    ('journal',),
    ('storage', 'libvirt.disks', 'libvirt.definition', 'libvirt.domain',
     'libvirt.backup', 'libvirt.memory',
     'libvirt.guest', 'libvirt.refusals', 'libvirt.sharing'),
    ('libvirt.host', 'stores.base'),
    ('stores',),
    # NOTE: below every backend: recover and gc find the undo of a step
    # and the collectors through entry points (journal/undo.py).
    ('cleanup',),
    ('policy', 'model', 'verify', 'catalog', 'metrics'),
    ('backends.steps',),
    ('backends.finish',),
    ('backends.base',),
    ('backends',),
    ('backends.qcow2', 'backends.raw'),
    ('snapshot', 'explain', 'restore'),
    ('revert',),
    ('cmd', 'virt'),
]


def layer_of(module: str) -> int:
    best, found = -1, None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            name = '%s.%s' % (PKG, prefix)
            if (module == name or module.startswith(name + '.')) and \
                    len(name) > best:
                best, found = len(name), rank
    assert found is not None, 'no layer for %s' % module
    return found


def modules():
    """(name, path) of every module with code (empty ``__init__.py``
    files of packages only group modules).
    """
    for path in sorted(ROOT.rglob('*.py')):
        if path.name == '__init__.py' and not path.read_text().strip():
            continue
        parts = path.relative_to(ROOT).with_suffix('').parts
        if parts[-1] == '__init__':
            parts = parts[:-1]
        yield '.'.join((PKG,) + parts), path


def imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            for a in node.names:
                yield '%s.%s' % (node.module, a.name)


@pytest.mark.parametrize('module,path', list(modules()),
                         ids=lambda v: v if isinstance(v, str) else '')
def test_imports_point_down(module, path):
    known = dict(modules())
    mine = layer_of(module)
    upward = []
    for name in set(imports(path)):
        if name.split('.')[0] == 'nova' and not module.startswith(
                PKG + '.virt'):
            upward.append('%s (Nova)' % name)
        if not name.startswith(PKG + '.') or name == module:
            continue
        target = name
        # "from pkg import module" names the module; "from module import
        # NAME" names a thing in it.
        while target not in known and '.' in target:
            target = target.rsplit('.', 1)[0]
        if target not in known or target == module:
            continue
        if layer_of(target) > mine:
            upward.append(target)
    assert not upward, '%s imports upward: %s' % (module, sorted(upward))


def graph():
    """Which of the package's modules each module imports (``from pkg
    import module`` names the module, ``from module import NAME`` names
    the module), including imports for type checking only.
    """
    known = dict(modules())
    edges = {}
    for module, path in known.items():
        targets = set()
        for name in imports(path):
            while name not in known and '.' in name:
                name = name.rsplit('.', 1)[0]
            if name in known and name != module:
                targets.add(name)
        edges[module] = targets
    return edges


def cycles(edges):
    """The groups of modules that import each other, directly or
    through others (strongly connected components of more than one).
    """
    index, low, stack, found = {}, {}, [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_modules_import_each_other():
    assert cycles(graph()) == []


def packages(edges):
    """The graph of ``edges`` between packages: each module of a package
    (``journal``, ``cleanup``, ``backends``...) counts as its package,
    each module of the package root as itself.
    """
    def of(module):
        parts = module.split('.')
        return '.'.join(parts[:2]) if len(parts) > 2 else module

    folded = {}
    for module, targets in edges.items():
        folded.setdefault(of(module), set()).update(
            of(t) for t in targets if of(t) != of(module))
    return folded


def test_no_packages_import_each_other():
    assert cycles(packages(graph())) == []


def test_a_cycle_is_found():
    # NOTE: the check above can fail: a cycle through a third module.
    edges = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}
    assert cycles(edges) == [['a', 'b', 'c']]
    # And the package's graph with one edge added upward has one.
    edges = graph()
    j = PKG + '.journal.journal'
    edges[j] = edges[j] | {PKG + '.cleanup.recovery'}
    assert cycles(edges)
    # And between packages, through modules that do not import each
    # other: gc importing the rbd backend, as it once did, while the
    # backend's gc part imports the sweep.
    edges = graph()
    gc, rbd_gc = PKG + '.cleanup.gc', PKG + '.backends.rbd_gc'
    edges[gc] = edges[gc] | {PKG + '.backends.rbd'}
    edges[rbd_gc] = edges[rbd_gc] | {PKG + '.cleanup.sweep'}
    assert cycles(edges) == []
    assert [PKG + '.backends', PKG + '.cleanup'] in cycles(packages(edges))


def test_every_step_kind_declares_its_undo():
    from nova_snapshot_ext.journal import journal
    from nova_snapshot_ext.journal import undo
    assert sorted(undo.kinds()) == sorted(
        set(journal.KINDS) - set(journal.MARKERS))
    for kind in undo.kinds():
        assert callable(undo.handler(kind)), kind


def test_every_module_has_a_layer():
    for module, _path in modules():
        layer_of(module)


def test_one_nbd_client():
    """storage/nbd.py alone imports libnbd's bindings and runs nbdcopy:
    the others read an export through it.
    """
    others = []
    for module, path in modules():
        if module == PKG + '.storage.nbd':
            continue
        tree = ast.parse(path.read_text())
        runs = any(isinstance(node, ast.Constant) and node.value == 'nbdcopy'
                   for node in ast.walk(tree))
        if 'nbd' in set(imports(path)) or runs:
            others.append(module)
    assert not others, 'NBD client code outside storage/nbd.py: %s' % others


def test_no_module_or_function_is_too_long():
    """A module past 400 lines or a function past 60 is asking to be
    split along a seam it already has.
    """
    long = []
    for module, path in modules():
        text = path.read_text()
        if len(text.splitlines()) > 400:
            long.append(module)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                    and node.end_lineno - node.lineno >= 60:
                long.append('%s.%s' % (module, node.name))
    assert long == []
