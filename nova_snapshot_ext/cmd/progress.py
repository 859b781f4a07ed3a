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

"""The progress bar of the command line (only on a terminal)."""

from collections.abc import Iterator
import contextlib
import os
from typing import TextIO

import tqdm

from nova_snapshot_ext.model import Progress

STAGES = {'copy': 'live copy', 'convert': 'convert', 'upload': 'store'}


@contextlib.contextmanager
def bar(stream: TextIO) -> Iterator[Progress]:
    """Yield a progress callback that draws a bar on ``stream`` when it is
    a terminal, and does nothing otherwise.
    """
    if not stream.isatty():
        yield lambda stage, fraction: None
        return
    state: dict = {'stage': None, 'bar': None}
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        size = os.terminal_size((0, 0))
    # A terminal that reports no size (a bare pty) still gets a bar.
    shape = {'ncols': min(size.columns or 80, 100),
             'nrows': size.lines or 24}

    def report(stage: str, fraction: float) -> None:
        if state['stage'] != stage:
            if state['bar'] is not None:
                state['bar'].close()
            state['stage'] = stage
            state['bar'] = tqdm.tqdm(
                total=100, desc=STAGES.get(stage, stage), file=stream,
                unit='%', leave=True, **shape,
                bar_format='{desc:>9}: {percentage:3.0f}%|{bar}| {elapsed}')
        b = state['bar']
        b.update(max(0.0, fraction * 100 - b.n))

    try:
        yield report
    finally:
        if state['bar'] is not None:
            state['bar'].close()
