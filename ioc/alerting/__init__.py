"""Alerting, generated from the contract: rules, their tests, routing and scrape configs.

- :mod:`ioc.alerting.rules`: the alerts and recording rules (thresholds from
  :mod:`ioc.contract.thresholds`).
- :mod:`ioc.alerting.promtool`: ``promtool test rules`` cases at every ``for:`` boundary.
- :mod:`ioc.alerting.alertmanager`: Alertmanager routing, grouping and inhibition.
- :mod:`ioc.alerting.scrape`: Prometheus scrape jobs and target labels (local and compose).
- :mod:`ioc.alerting.build`: ``ioc alerts build``, which writes all of them under ``deploy/``.
"""
