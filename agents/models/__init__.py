"""Model backends behind one registry keyed by ``provider/model`` strings."""
