"""The contract: defined once, used by simulators, streams, services, dashboards and alerts.

- :mod:`ioc.contract.feeds`: the feed registry: one declaration per feed (``Feed``,
  ``FeedSpec``; the built-in ones in :mod:`ioc.contract.builtin_feeds`).
- :mod:`ioc.contract.topics`: Kafka topic names and their partitions/retention.
- :mod:`ioc.contract.schemas`: versioned message schemas of the feeds.
- :mod:`ioc.contract.raw`: the raw tables' columns, derived from the schemas.
- :mod:`ioc.contract.deadletter`: the dead-letter record (wire format, size bounds, key).
- :mod:`ioc.contract.topology`: the province model (units, sites, devices) and the built-in
  scenarios (``scenarios/*.yaml``, ``*.json.gz`` for national: explicit topologies, generated
  by the simulators).
- :mod:`ioc.contract.tables`: TimescaleDB table names.
- :mod:`ioc.contract.metrics`: Prometheus metric names and labels.
"""

# The per-feed tables of the modules above are filled from the feed registry: importing any
# part of the contract registers the built-in feeds first.
from ioc.contract import feeds as feeds
