"""Who hears whom: networkx graphs built from strings, message routing, disclosure."""

from topologies.graph import Disclosure, Topology, TopologyView, build_topology, parse_call

__all__ = ["Disclosure", "Topology", "TopologyView", "build_topology", "parse_call"]
