"""The cabin network: the Wi-Fi access points (WAPs) managed as unreliable devices.

Modules (import them directly; this package imports nothing, so the simulator process starts fast):

- :mod:`.model`: configuration and status values (frozen dataclasses), desired-configuration specs;
- :mod:`.errors`: the device errors and how the manager classifies them;
- :mod:`.driver`: the :class:`~.driver.AccessPoint` base class (public methods) and the JSON-API
  layer; :mod:`.http_driver` is the real HTTP JSON driver, :mod:`.sim_driver` its in-process twin;
- :mod:`.device`: the simulated device's behaviour, shared by the twin and :mod:`.simulator` (the
  device as its own process on its own loopback address);
- :mod:`.tables`, :mod:`.store`: inventory, job queue and journal rows in the journal database;
- :mod:`.runner`: running one job (retries with backoff, classified failures, confirm-or-revert);
- :mod:`.manager`: the service (polling, one task per device, reconciliation, BITE), :mod:`.events`
  its domain events;
- the admin routes live in ``appliance.web.admin.cabin``; ``appliance.daemon.build`` wires it.
"""
