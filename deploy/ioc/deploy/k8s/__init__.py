"""Kubernetes manifests generated from the contract (``ioc deploy k8s``).

:mod:`ioc.deploy.k8s.manifests` builds every document from the contract (topics, Kafka access,
database roles, alert rules, Alertmanager routing, dashboards) so that the committed output
under ``deploy/k8s/manifests`` cannot drift from the code the other deployments use;
``tests/unit/test_k8s_manifests.py`` fails when it does, and validates it offline.
"""
