"""The operations service: API, console, maintenance, escalation, SLA, audit."""
