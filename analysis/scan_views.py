"""The report's reader of a scan's views: ``scan(..., views=False)`` reads (or finds in
the cache) every chunk's views and returns only the load report and the chunks' parts;
the views are then gathered from the parts one at a time, when a section needs them, so
that the report never holds all of them at once. What each view is: ``analysis.scan``.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from stagbench.analysis import injection
from stagbench.analysis.scan import Scan, _Broken, _categories, _concat, _gather


class Changed(Exception):
    """A cached part changed or went away since the scan (another command evicted or
    rebuilt it): scan again with the views."""


def _view(result: Scan, name: str) -> list[pd.DataFrame]:
    try:
        return _gather(result.parts, name)
    except _Broken as exc:
        raise Changed(str(exc.entry)) from exc


def rounds(result: Scan) -> pd.DataFrame:
    """The slim agent-round table, as ``Scan.rounds``."""
    df = _concat(_view(result, "rounds"), categories=True)
    pa.default_memory_pool().release_unused()
    return df


def agent_trials(result: Scan) -> pd.DataFrame:
    """The agent-trials (not yet classified), as ``Scan.agent_trials``."""
    return _concat(_view(result, "agent_trials"))


def injection_data(result: Scan) -> injection.InjectionData:
    """The injection views, as ``Scan.injection``."""
    rows = injection.finish_rows(_categories(_concat(_view(result, "inj_rows")), "inj_rows"))
    messages = _categories(
        _concat(_view(result, "inj_messages"), pd.DataFrame(columns=injection.MESSAGE_COLUMNS)),
        "inj_messages",
    )
    trials = _concat(_view(result, "inj_trials"))
    pa.default_memory_pool().release_unused()
    return injection.InjectionData(rows, messages, trials, list(result.load.corrupt))
