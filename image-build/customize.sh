#!/usr/bin/env bash
# mmdebstrap --customize-hook: make the fresh Debian tree at $1 into the cabin server.
# Called by build.sh with WHEELS (directory of wheels) and REPO (the source tree) in the environment.
set -euo pipefail
root=${1:?usage: customize.sh ROOTFS_DIR}
: "${WHEELS:?}" "${REPO:?}"
# Never the host: every path below is written under $root.
[ -d "$root" ] && [ "$(cd "$root" && pwd -P)" != / ] || { echo "customize.sh: bad root $root" >&2; exit 1; }
sd=$REPO/systemd

# --- the service's files (the unit and its companions live in /usr: the root is read-only) ---
install -Dm644 "$sd/appliance.service" "$root/usr/lib/systemd/system/appliance.service"
for u in appliance-update.path appliance-update.service appliance-update-check.service; do
  install -Dm644 "$sd/$u" "$root/usr/lib/systemd/system/$u"
done
install -Dm644 "$sd/appliance.sysusers" "$root/usr/lib/sysusers.d/appliance.conf"
install -Dm644 "$sd/appliance.tmpfiles" "$root/usr/lib/tmpfiles.d/appliance.conf"
install -Dm644 "$sd/60-avionics-card.rules" "$root/usr/lib/udev/rules.d/60-avionics-card.rules"
install -Dm644 "$sd/appliance.toml" "$root/etc/appliance/appliance.toml"
install -Dm644 "$REPO/image-build/README.md" "$root/usr/share/doc/appliance/README.md"
install -Dm644 "$sd/README.md" "$root/usr/share/doc/appliance/systemd.md"

# Users and groups now: /etc is read-only at run time, so systemd-sysusers could not add them.
chroot "$root" systemd-sysusers

# --- software slot A: a virtualenv from the wheels; slot B empty until the first update ---
# The privileged updater runs from its own virtualenv on the read-only root
# (/usr/lib/appliance/updater), the image's version: a broken slot cannot break it.
mkdir -p "$root/opt/appliance/slots/a" "$root/opt/appliance/slots/b" "$root/tmp/wheels"
cp "$WHEELS"/*.whl "$root/tmp/wheels/"
for venv in /opt/appliance/slots/a /usr/lib/appliance/updater; do
  chroot "$root" python3 -m venv "$venv"
  chroot "$root" "$venv/bin/pip" install --quiet --no-index --no-cache-dir \
    --disable-pip-version-check --find-links /tmp/wheels appliance
done
rm -rf "$root/tmp/wheels"
version=$(chroot "$root" /opt/appliance/slots/a/bin/python -c \
  'import importlib.metadata as m; print(m.version("appliance"))')
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
printf 'appliance %s\nbuilt %s\n' "$version" "$built" > "$root/opt/appliance/slots/a/SLOT"
# What the updater and BITE read: bundle version 0 (the factory install; any signed bundle is above).
printf '{"bundle_id": "", "installed_at": 0, "keyids": [], "name": "factory", "package_version": "%s", "version": 0}\n' \
  "$version" > "$root/opt/appliance/slots/a/slot.json"
ln -sfn slots/a "$root/opt/appliance/current"
chroot "$root" /opt/appliance/current/bin/appliance --help >/dev/null
chroot "$root" /usr/lib/appliance/updater/bin/appliance updater --help >/dev/null

# --- boot: units, read-only root, no questions asked ---
systemctl --root="$root" enable appliance.service appliance-update.path appliance-update-check.service
systemctl --root="$root" set-default multi-user.target
# Nobody answers a first-boot wizard on an aircraft; apt timers have no network and no writable /var/lib.
systemctl --root="$root" mask systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer \
  dpkg-db-backup.timer 2>/dev/null || true
echo cabin-server > "$root/etc/hostname"
ln -sfn /usr/share/zoneinfo/Etc/UTC "$root/etc/localtime"
# Empty machine-id: systemd puts a transient one over it at each boot (the root stays read-only).
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"

# Logs: /var is a tmpfs (systemd.volatile=state), so keep journald in RAM, bounded. What the
# airline needs leaves through the appliance's own journal and outbox on the data partition.
install -Dm644 /dev/stdin "$root/etc/systemd/journald.conf.d/appliance.conf" <<'EOF'
[Journal]
Storage=volatile
RuntimeMaxUse=64M
EOF

# Network: a lab default only — DHCP on every wired link (systemd-networkd), so a bench server or
# the QEMU boot test (test-disk.sh) is reachable. The aircraft's cabin and maintenance interfaces
# (static addresses, which network the admin port binds to) replace it at integration.
install -Dm644 /dev/stdin "$root/etc/systemd/network/90-lab-dhcp.network" <<'EOF'
[Match]
Type=ether

[Network]
DHCP=yes
EOF
systemctl --root="$root" enable systemd-networkd.service
systemctl --root="$root" mask systemd-networkd-wait-online.service

install -Dm644 /dev/stdin "$root/etc/fstab" <<'EOF'
# The cabin server's partitions (see /usr/share/doc/appliance/README.md). The software partition
# is mounted rw but root-owned: only the privileged updater (appliance-update.service) writes it;
# the service (User=appliance, ProtectSystem=strict) sees it read-only. / is not listed: the
# kernel command line mounts it read-only (root=PARTUUID=... ro) and nothing remounts it; /var is
# a tmpfs (systemd.volatile=state); the data partition is the only one the service writes. In a
# container (systemd-nspawn) systemd ignores these device entries.
PARTLABEL=esp             /efi                vfat  ro,umask=0077,noauto,x-systemd.automount  0 2
PARTLABEL=appliance-sw    /opt/appliance      ext4  rw,nodev,nosuid,noatime                   0 2
PARTLABEL=appliance-data  /var/lib/appliance  ext4  rw,nodev,nosuid,noexec,noatime,x-systemd.growfs 0 2
tmpfs                     /tmp                tmpfs mode=1777,nodev,nosuid,size=256M          0 0
EOF
mkdir -p "$root/efi" "$root/var/lib/appliance"

# --- the cabin network (issue 15): appliance-cabinnet.service runs dnsmasq and applies the gate's
# nftables changes (packages in build.sh) with the network capabilities; the service, none. Its drop-in
# pulls the helper in; static addresses for the passenger bridge and maintenance.
install -Dm644 "$sd/cabinnet.conf" "$root/usr/lib/systemd/system/appliance.service.d/cabinnet.conf"
install -Dm644 "$sd/appliance-cabinnet.service" "$root/usr/lib/systemd/system/appliance-cabinnet.service"
install -Dm644 "$sd/cabinnet-pax0.network" "$root/etc/systemd/network/20-cabinnet-pax0.network"
install -Dm644 "$sd/cabinnet-mnt0.network" "$root/etc/systemd/network/20-cabinnet-mnt0.network"

# Smaller: caches that a read-only system never uses.
rm -rf "$root/var/cache/apt/"*.bin "$root/var/lib/apt/lists/"*_Packages 2>/dev/null || true
