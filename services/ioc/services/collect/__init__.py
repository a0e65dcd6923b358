"""``ioc collect``: collectors of real sources, producing the same contract messages as the
simulators (docs/collectors.md). Today: ICMP reachability of the network nodes."""
