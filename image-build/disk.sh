#!/usr/bin/env bash
# Assemble the GPT disk image from a built root filesystem, without loop devices or mounts:
# each partition's filesystem is made from a directory (mkfs.ext4 -d, mtools for the ESP), then
# written into the partitioned image file at its offset.
#
#   image-build/disk.sh ROOTFS_DIR IMAGE_FILE
#
# Partitions (sizes in MiB, override by environment): see image-build/README.md.
set -euo pipefail
rootfs=$1
image=$2
ESP_MB=${ESP_MB:-256}
ROOT_MB=${ROOT_MB:-0}        # 0: rootfs size + 40 %, at least 768 MiB
SW_MB=${SW_MB:-1024}         # both software slots
DATA_MB=${DATA_MB:-1024}     # the journal; grown to the partition at boot (x-systemd.growfs)
for tool in mkfs.ext4 sfdisk mkfs.vfat mcopy mmd; do
  command -v "$tool" >/dev/null || { echo "disk.sh: $tool missing (apt-get install e2fsprogs fdisk dosfstools mtools)" >&2; exit 1; }
done

work=$(mktemp -d "$(dirname "$image")/.disk.XXXXXX")
trap 'rm -rf "$work"' EXIT
mib=$((1024 * 1024))

# The root partition's tree: the rootfs without the software slots (their own partition).
cp -al "$rootfs" "$work/root"
rm -rf "$work/root/opt/appliance" && mkdir -p "$work/root/opt/appliance"
if [ "$ROOT_MB" = 0 ]; then
  used=$(du -sm "$work/root" | cut -f1)
  ROOT_MB=$(( used * 14 / 10 )); [ "$ROOT_MB" -lt 768 ] && ROOT_MB=768
fi
uuid() { cat /proc/sys/kernel/random/uuid; }
root_uuid=$(uuid)
esp_uuid=$(uuid)
sw_uuid=$(uuid)
data_uuid=$(uuid)

# Filesystems.
mkfs.ext4 -q -L root -d "$work/root" "$work/root.img" "${ROOT_MB}M"
mkfs.ext4 -q -L appliance-sw -d "$rootfs/opt/appliance" "$work/sw.img" "${SW_MB}M"
owner=$(awk -F: '$1 == "appliance" {print $3 ":" $4}' "$rootfs/etc/passwd")
mkfs.ext4 -q -L appliance-data -E "root_owner=${owner:-0:0}" "$work/data.img" "${DATA_MB}M"

mkfs.vfat -n ESP -C "$work/esp.img" $(( ESP_MB * 1024 )) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries ::/appliance
kernel=$(ls "$rootfs"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -1 || true)
efi=$rootfs/usr/lib/systemd/boot/efi/systemd-bootx64.efi
if [ -n "$kernel" ] && [ -f "$efi" ]; then
  kver=${kernel##*/vmlinuz-}
  mcopy -i "$work/esp.img" "$efi" ::/EFI/BOOT/BOOTX64.EFI
  mcopy -i "$work/esp.img" "$kernel" ::/appliance/vmlinuz
  mcopy -i "$work/esp.img" "$rootfs/boot/initrd.img-$kver" ::/appliance/initrd.img
  printf 'default appliance.conf\ntimeout 0\neditor no\n' > "$work/loader.conf"
  cat > "$work/entry.conf" <<EOF
title   Cabin server (Debian $(cat "$rootfs/etc/debian_version"), kernel $kver)
linux   /appliance/vmlinuz
initrd  /appliance/initrd.img
options root=PARTUUID=$root_uuid ro systemd.volatile=state console=tty0 console=ttyS0,115200 quiet
EOF
  mcopy -i "$work/esp.img" "$work/loader.conf" ::/loader/loader.conf
  mcopy -i "$work/esp.img" "$work/entry.conf" ::/loader/entries/appliance.conf
else
  echo "disk.sh: no kernel or systemd-boot in the rootfs (KERNEL=0?): the ESP stays empty" >&2
fi

# The partition table, then each filesystem at its offset (sparse).
start=1
table="label: gpt
unit: sectors
"
add() {  # name size_mib type uuid
  table+="start=$((start * mib / 512)), size=$(($2 * mib / 512)), type=$3, uuid=$4, name=$1
"
  start=$((start + $2))
}
add esp "$ESP_MB" C12A7328-F81F-11D2-BA4B-00A0C93EC93B "$esp_uuid"
add root "$ROOT_MB" 4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709 "$root_uuid"
add appliance-sw "$SW_MB" 0FC63DAF-8483-4772-8E79-3D69D8477DE4 "$sw_uuid"
add appliance-data "$DATA_MB" 0FC63DAF-8483-4772-8E79-3D69D8477DE4 "$data_uuid"
rm -f "$image.new"
truncate -s $(( (start + 1) * mib )) "$image.new"
printf '%s' "$table" | sfdisk --quiet --no-reread --no-tell-kernel "$image.new"
i=0
for part in esp root sw data; do
  i=$((i + 1))
  off=$(sfdisk --json "$image.new" | python3 -c \
    "import json,sys; print(json.load(sys.stdin)['partitiontable']['partitions'][$i - 1]['start'])")
  dd if="$work/$part.img" of="$image.new" bs=1M seek=$((off * 512 / mib)) conv=notrunc,sparse status=none
done
mv "$image.new" "$image"
sfdisk --list "$image" | sed -n '/^Device/,$p'
