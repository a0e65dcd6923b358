"""The local stack: real Kafka, TimescaleDB, Prometheus and Alertmanager on loopback."""
