"""Helpers shared by the integration and chaos tests, one module per concern.

- :mod:`tests.support.processes`: ``ioc worker`` and other ``ioc`` commands in a namespace
  (built on :mod:`ioc.processes`, which the main job and the benchmarks use too)
- :mod:`tests.support.wait`: polling for a condition
- :mod:`tests.support.db`: queries in a namespace's schema, rows landed
- :mod:`tests.support.kafka`: dead letters by source record
- :mod:`tests.support.metrics`: samples a live worker exposes
- :mod:`tests.support.reconcile`: sequence-number reconciliation and worker accounting
- :mod:`tests.support.alertmanager`: forgetting what Alertmanager already paged

A namespace itself is made by :func:`ioc.bootstrap.bootstrap` and removed by
:func:`ioc.bootstrap.drop_namespace` (the ``namespace`` fixture does it).
"""
