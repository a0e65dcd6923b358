"""The contract: defined once, used by simulators, streams, services, dashboards and alerts.

- :mod:`ioc.contract.topics`: Kafka topic names and their partitions/retention.
- :mod:`ioc.contract.schemas`: versioned message schemas of the three feeds.
- :mod:`ioc.contract.raw`: the raw tables' columns, derived from the schemas.
- :mod:`ioc.contract.deadletter`: the dead-letter record (wire format, size bounds, key).
- :mod:`ioc.contract.topology`: the province model (units, sites, devices).
- :mod:`ioc.contract.tables`: TimescaleDB table names.
- :mod:`ioc.contract.metrics`: Prometheus metric names and labels.
"""
