"""Stream processing: workers (a Faust app, librdkafka batch consumers) that validate the
feeds and write them to TimescaleDB."""
