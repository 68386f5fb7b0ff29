"""Who hears whom: networkx graphs built from strings, message routing, disclosure."""

from stagbench.records import Disclosure
from stagbench.topologies.graph import (
    TOPOLOGIES,
    Topology,
    TopologyKind,
    TopologyView,
    build_topology,
    inline_graph,
    read_graph_file,
    topology,
)

__all__ = [
    "TOPOLOGIES",
    "Disclosure",
    "Topology",
    "TopologyKind",
    "TopologyView",
    "build_topology",
    "inline_graph",
    "read_graph_file",
    "topology",
]
