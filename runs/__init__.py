"""Running experiments: the spec, composing seats, the orchestrator, the results folder."""
