"""Model backends behind one registry keyed by ``provider/model`` strings.

Importing this package registers the built-in providers (``providers/``); each imports its
SDK or engine only when a model of it is first built.
"""

from stagbench.agents.models import providers  # noqa: F401 - registers the built-ins
