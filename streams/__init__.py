"""Stream processing: Faust agents that validate the feeds and write them to TimescaleDB."""
