#!/usr/bin/env bash
# Boot the GPT disk image in QEMU the way the server boots it — UEFI firmware (OVMF) -> systemd-boot
# -> kernel + initrd -> read-only root, /var tmpfs, software and data partitions mounted — and wait
# until the appliance's passenger port answers through a port forwarded to this machine's loopback.
#
#   image-build/test-disk.sh [var/image/appliance.img]      (TIMEOUT=s, ACCEL=tcg|kvm)
#
# Needs qemu-system-x86 and ovmf (Debian). Writes nothing to the image (-snapshot). ACCEL defaults to
# tcg (software emulation): KVM on the machines of this project is PVM (no VT-x/AMD-V), which
# fails inside OVMF ("emulation failure" at fninit); see image-build/README.md.
set -euo pipefail
image=${1:-var/image/appliance.img}
TIMEOUT=${TIMEOUT:-300}
ACCEL=${ACCEL:-tcg}
code=/usr/share/OVMF/OVMF_CODE_4M.fd
vars_template=/usr/share/OVMF/OVMF_VARS_4M.fd
for f in "$image" "$code" "$vars_template"; do
  [ -f "$f" ] || { echo "test-disk: $f missing (make image; apt-get install qemu-system-x86 ovmf)" >&2; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "test-disk: apt-get install qemu-system-x86" >&2; exit 1; }

work=$(mktemp -d)
qemu_pid=
cleanup() {
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then kill "$qemu_pid"; wait "$qemu_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cp "$vars_template" "$work/vars.fd"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

t0=$(date +%s)
qemu-system-x86_64 -machine q35 -accel "$ACCEL" -m 1024 -smp 2 -display none -snapshot \
  -drive if=pflash,format=raw,readonly=on,file="$code" -drive if=pflash,format=raw,file="$work/vars.fd" \
  -drive file="$image",format=raw,if=virtio \
  -netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:"$port"-:8080 -device virtio-net-pci,netdev=n0 \
  -serial file:"$work/console.log" &
qemu_pid=$!

body=
while [ $(( $(date +%s) - t0 )) -lt "$TIMEOUT" ]; do
  kill -0 "$qemu_pid" 2>/dev/null || { echo "test-disk: qemu exited" >&2; tail -c 4000 "$work/console.log" >&2; exit 1; }
  if body=$(curl -sf -m 3 "http://127.0.0.1:$port/api/v1/flight"); then break; fi
  body=
  sleep 2
done
elapsed=$(( $(date +%s) - t0 ))
if [ -z "$body" ]; then
  echo "test-disk: FAILED: no answer on the passenger port after ${elapsed} s; console:" >&2
  tail -c 6000 "$work/console.log" >&2
  exit 1
fi
echo "test-disk: passenger port answered ${elapsed} s after power-on (accel $ACCEL): ${body:0:80}..."
grep -a -E "Mounted (opt-appliance|var-lib-appliance|var)\.mount|Started appliance\.service" \
  "$work/console.log" | sed 's/\x1b\[[0-9;]*m//g; s/^/  /' || true
echo "1 passed, 0 failed"
