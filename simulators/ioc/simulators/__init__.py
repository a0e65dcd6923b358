"""Feed simulators: camera, telehealth and network-node telemetry for a scenario, with faults.

``ioc simulate`` (:mod:`ioc.simulators.cli`) drives :class:`ioc.simulators.engine.Simulator`
into Kafka or a JSONL file. :mod:`ioc.simulators.province` is the random province generator
that made the contract's built-in scenarios (``ioc scenario generate``).
"""
