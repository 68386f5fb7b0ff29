"""Analysis reads only stored transcripts: tables, metrics, archetypes, statistics, reports."""
