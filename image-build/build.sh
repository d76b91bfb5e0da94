#!/usr/bin/env bash
# Build the cabin server's root filesystem (Debian bookworm, mmdebstrap) with the appliance in
# software slot A, then (unless NO_DISK=1) the GPT disk image. See image-build/README.md.
#
#   image-build/build.sh                 # -> var/image/rootfs/ and var/image/appliance.img
#   OUT=/some/dir KERNEL=0 NO_DISK=1 image-build/build.sh
#
# Needs root, mmdebstrap, and for the disk image e2fsprogs, dosfstools, mtools, fdisk (sfdisk).
# Debian packages come from this machine's own apt sources (APT_SOURCES), Python wheels from the
# Python package index through pip, pinned to what the development venv has (pip freeze).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
OUT=${OUT:-$repo/var/image}
PYTHON=${PYTHON:-$repo/.venv/bin/python}
SUITE=${SUITE:-bookworm}
KERNEL=${KERNEL:-1}        # 1: kernel + systemd-boot (a bootable disk); 0: rootfs for nspawn only
NO_DISK=${NO_DISK:-0}
APT_SOURCES=${APT_SOURCES:-}
if [ -z "$APT_SOURCES" ]; then
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
    if [ -s "$f" ]; then APT_SOURCES=$f; break; fi
  done
fi
[ "$(id -u)" = 0 ] || { echo "build.sh: needs root (mmdebstrap --mode=root, chown)" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "build.sh: apt-get install mmdebstrap" >&2; exit 1; }
[ -n "$APT_SOURCES" ] || { echo "build.sh: no apt sources file; set APT_SOURCES" >&2; exit 1; }

t0=$(date +%s)
mkdir -p "$OUT"
log() { printf '[image %4ds] %s\n' $(( $(date +%s) - t0 )) "$*"; }

# 1. Wheels: the repo's two packages plus every dependency, pinned to the tested dev venv.
log "wheels -> $OUT/wheels"
rm -rf "$OUT/wheels" && mkdir -p "$OUT/wheels"
"$PYTHON" -m pip freeze --exclude-editable --disable-pip-version-check > "$OUT/constraints.txt"
# Built from a copy of the sources, so setuptools leaves no build/ or *.egg-info in the work tree.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
tar -C "$repo" --exclude=./.venv --exclude=./var --exclude=./.git --exclude='*.egg-info' \
  --exclude=./build --exclude='.*_cache' --exclude=./.hypothesis -cf - . | tar -C "$src" -xf -
# The two local directories are direct requirements, so pip never takes a same-named package from
# the index for them; their dependencies come from the index, pinned by the constraints.
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check -c "$OUT/constraints.txt" \
  -w "$OUT/wheels" "$src/firmware-bridge" "$src"
log "$(ls "$OUT/wheels" | wc -l) wheels"

# 2. The root filesystem.
pkgs=systemd,systemd-sysv,udev,dbus,libpam-systemd,python3,python3-venv,netbase,iproute2,e2fsprogs,procps,less
pkgs=$pkgs,dnsmasq-base,nftables  # the cabin network (issue 15)
if [ "$KERNEL" = 1 ]; then pkgs=$pkgs,linux-image-amd64,systemd-boot-efi,initramfs-tools; fi
rm -rf "$OUT/rootfs.new"
log "mmdebstrap $SUITE (sources: $APT_SOURCES) -> $OUT/rootfs"
WHEELS="$OUT/wheels" REPO="$repo" \
mmdebstrap --mode=root --variant=minbase --components=main --include="$pkgs" \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook="\"$here/customize.sh\" \"\$1\"" \
  "$SUITE" "$OUT/rootfs.new" "$APT_SOURCES"
rm -rf "$OUT/rootfs.old"
[ -d "$OUT/rootfs" ] && mv "$OUT/rootfs" "$OUT/rootfs.old"
mv "$OUT/rootfs.new" "$OUT/rootfs"
rm -rf "$OUT/rootfs.old"
log "rootfs: $(du -sh --exclude=proc "$OUT/rootfs" | cut -f1)"

# 3. The disk image.
if [ "$NO_DISK" != 1 ]; then
  "$here/disk.sh" "$OUT/rootfs" "$OUT/appliance.img"
  log "disk: $OUT/appliance.img ($(du -h --apparent-size "$OUT/appliance.img" | cut -f1), $(du -h "$OUT/appliance.img" | cut -f1) used)"
fi
log "done"
