"""ISC dhcpd: dhcpd.conf's language, `dhcpd -t`, failover pair rules, restarts, leases."""
