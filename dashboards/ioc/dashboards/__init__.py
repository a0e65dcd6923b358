"""Grafana dashboards generated in code from the contract."""
