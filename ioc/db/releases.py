"""Which schema each release shipped: the marker the upgrade test starts from.

The project tags no releases; a release is a commit whose migrations are deployed. When one
is cut, set :data:`PREVIOUS_RELEASE_MIGRATION` to the newest migration it contains (and tag
the commit ``release-<n>``): tests/chaos/test_upgrade.py then builds that schema with data
and migrates it to this tree's head, so every migration added since is proved on data.
"""

from __future__ import annotations

from typing import Final

PREVIOUS_RELEASE_MIGRATION: Final = 8
"""Newest migration of the previous release: 0008_sla.sql, the last migration of the
committed history when issue 16 started (0009 onwards are this release's)."""
