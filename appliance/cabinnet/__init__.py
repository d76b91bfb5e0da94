"""The server's side of the cabin network: DHCP and DNS for phones, the gate, the captive API's name.

- :mod:`.leases`: the DHCP lease file (dnsmasq's format);
- :mod:`.dnsmasq`: the two dnsmasq instances (DHCP + DNS, and the held phones' DNS), supervised;
- :mod:`.rules`: the nftables ruleset (pure: rendered from the settings and the mode's policy);
- :mod:`.gate`: the gate (held and open clients, journaled, rebuilt from the journal at start);
- :mod:`.service`: :class:`~.service.CabinNet`, the part the daemon starts.

A feature: it imports ``store``, ``modes`` and ``settings``, never ``web`` or another feature.
"""
