"""``ioc collect``: collectors of real sources, producing the same contract messages as the
simulators (docs/collectors.md): the network nodes over ICMP, SNMP and traps, the telehealth
stations and video bridges over HTTP (through the simulators' adapters), the cameras over
RTSP (their streams decoded by ffmpeg)."""
