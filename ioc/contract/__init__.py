"""The contract: defined once, used by simulators, streams, services, dashboards and alerts.

- :mod:`ioc.contract.topics`: Kafka topic names and their partitions/retention.
- :mod:`ioc.contract.schemas`: versioned message schemas of the three feeds.
- :mod:`ioc.contract.topology`: the province model (units, sites, devices).
- :mod:`ioc.contract.tables`: TimescaleDB table names.
- :mod:`ioc.contract.metrics`: Prometheus metric names and labels.
"""
