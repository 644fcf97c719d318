"""One line for an exception raised by code that is not ours (a plug-in controller, a
callback): its type, its message on one line, and where in that code it was raised.

Pure Python: the command-line tools, the controller node and the node base all say a
foreign failure the same way.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Iterable


def raised_at(exc: BaseException, skip: Iterable[str] = ()) -> str:
    """``"RuntimeError: boom (at ctl.py:64 in plan)"``: the exception and the last frame of
    its traceback whose file is not one of ``skip`` (the caller's own modules) and not
    numpy's, so that the place named is the foreign code's own."""
    frames = traceback.extract_tb(exc.__traceback__)
    skipped = {os.path.abspath(path) for path in skip}
    own = [
        f
        for f in frames
        if os.path.abspath(f.filename) not in skipped and '/numpy/' not in f.filename
    ]
    text = ' '.join(str(exc).split()) or '-'
    where = ''
    if own or frames:
        frame = (own or frames)[-1]
        where = f' (at {os.path.basename(frame.filename)}:{frame.lineno} in {frame.name})'
    return f'{type(exc).__name__}: {text}{where}'
