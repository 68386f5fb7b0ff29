"""``stagbench view DIR``: a run's transcripts as static web pages, read in a browser.

It reads records only (``stagbench.records``' reader, each transcript re-derived with the
engine by ``games.audit``, as the analysis reads them: a file that disagrees, or that cannot
be read, is listed in the index with why and not drawn). A trial's page is named by its id
when that is a plain token, else by a hash of it: nothing is written outside the folder.
The pages need no server, no network and no CDN: every page holds its own data, and the
script and style sheet sit beside them in ``assets/``, so the folder works from a shared
drive (``file://``) as well as from any static web server.

    DIR/view/index.html        the trials, filterable by every factor
    DIR/view/trials/ID.html    one trial: its graph, messages, actions, payoffs, model calls
                               (id-HASH.html for an id that is not a plain name)
    DIR/view/assets/           viewer.js, viewer.css
"""

from stagbench.viewer.build import build_view, trial_data

__all__ = ["build_view", "trial_data"]
