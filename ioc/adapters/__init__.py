"""Adapters: each maps one source system's native payload onto the contract's messages.

The simulators build native payloads (Jitsi's ``/colibri/stats``, Wazuh ``alerts.json`` lines,
Suricata EVE JSON, the portal's dossier events as LGSP carries them) and pass them through these
adapters, so a collector reading the real system later uses the same mapping.
"""
