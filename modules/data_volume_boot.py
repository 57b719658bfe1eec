"""The boot script that gives an instance its data volume(s), as a user-data part.

Two ways a data volume reaches an instance:

- **Claimed at boot** (``claim_script``, compute groups). The launch template has no data volume: a
  launch-template volume is created fresh for every instance, so a replacement would already hold the
  device and the retained volume of the instance it replaces could never go back as the same device.
  Instead, for each device, the boot script:

  1. uses the volume already attached as that device, if any (the script is run again by hand);
  2. else attaches a retained volume of the group for that device that waits (``available``) in this
     instance's AZ, newest first; when another instance takes it first (the attach fails), the next one;
     a volume that ``spotkit recover volumes`` copied to another AZ (``spotkit:origin-volume``) is left
     alone, its copy supersedes it;
  3. else, when such a volume waits only in another AZ and ``in_other_az`` is ``wait`` (the default),
     it attaches nothing: it logs what to run (``spotkit recover volumes --group G`` snapshots the
     volume and re-creates it here) and leaves a background waiter that mounts the device once it is
     attached, for up to ``wait_minutes``, so the rest of the boot (the interruption agent) goes on;
  4. else creates a new encrypted volume in this AZ with the tag contract of ``spotkit.constructs.data_volume`` at
     creation (``--client-token`` makes a retry return the same volume) and attaches it.

  A volume attached through the API is kept when the instance terminates (DeleteOnTermination is false
  for it), so it waits for the next instance. Nothing here deletes or detaches a volume.

- **Attached by Terraform** (``attached_script``, the standalone persistent spot instance): wait until
  the volume shows as attached, then mount it.

Either way the volume is mounted by UUID with ``nofail``; a blank volume is formatted, one with a file
system never is. Bash functions come first and the per-device calls last, after the marker line
``FUNCTIONS_END``.
"""

from __future__ import annotations

import json
import shlex
from typing import Mapping, Sequence

from spotkit.runtime import notice

IN_OTHER_AZ = ("wait", "create")
FUNCTIONS_END = "# end of spotkit data-volume functions"

PREAMBLE = r"""SPOTKIT_IMDS_URL=${SPOTKIT_IMDS_URL:-http://169.254.169.254}
SPOTKIT_LOG=${SPOTKIT_LOG:-/var/log/spotkit-user-data.log}
TOKEN=$(curl -sS -X PUT "$SPOTKIT_IMDS_URL/latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
spotkit_md() { curl -sS -H "X-aws-ec2-metadata-token: $TOKEN" "$SPOTKIT_IMDS_URL/latest/meta-data/$1"; }
IID=$(spotkit_md instance-id); REGION=$(spotkit_md placement/region); AZ=$(spotkit_md placement/availability-zone)
spotkit_ec2() { aws ec2 --region "$REGION" --output text "$@"; }
spotkit_some() { [ -n "${1:-}" ] && [ "$1" != "None" ]; }

# The volume attached to this instance as device $1 (prints None when there is none).
spotkit_attached_volume() {
  spotkit_ec2 describe-volumes --filters Name=attachment.instance-id,Values="$IID" Name=attachment.device,Values="$1" \
    --query "Volumes[0].VolumeId" 2>/dev/null
}

# spotkit_mount_data_volume VOLUME DEVICE MOUNT_POINT: mount by UUID with nofail; format only a blank volume.
spotkit_mount_data_volume() {
  local vol=$1 dev=$2 mnt=$3 path uuid i
  path=/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${vol//-/}; [ -e "$path" ] || path=$dev
  for i in $(seq 1 30); do [ -e "$path" ] && break; sleep 2; done
  blkid "$path" >/dev/null 2>&1 || mkfs.xfs "$path"  # formats only a blank volume, never existing data
  mkdir -p "$mnt"
  uuid=$(blkid -s UUID -o value "$path")
  grep -q "$uuid" /etc/fstab || echo "UUID=$uuid $mnt xfs defaults,nofail 0 2" >> /etc/fstab
  mountpoint -q "$mnt" || mount "$mnt"
}

# spotkit_set_data_dir MOUNT_POINT: tell workloads where their data volume is (SPOTKIT_DATA_DIR).
spotkit_set_data_dir() {
  echo "SPOTKIT_DATA_DIR=$1" >> /etc/environment
  echo "export SPOTKIT_DATA_DIR=$1" > /etc/profile.d/spotkit-data.sh
}
"""

_CLAIM_TEMPLATE = r"""
# spotkit_claim_data_volume GROUP DEVICE IN_OTHER_AZ CREATE_ARGS...: prints the volume now attached as DEVICE.
# Exit 2: a retained volume of GROUP+DEVICE waits only in another AZ and IN_OTHER_AZ is wait.
spotkit_claim_data_volume() {
  local group=$1 dev=$2 other=$3 vol id az origins waiting here="" elsewhere=""
  shift 3
  vol=$(spotkit_attached_volume "$dev")
  if spotkit_some "$vol"; then echo "$vol"; return 0; fi
  origins=" $(spotkit_ec2 describe-volumes --filters Name=tag:@TAG_GROUP@,Values="$group" \
    Name=tag-key,Values=@TAG_ORIGIN_VOLUME@ --query "Volumes[].Tags[?Key=='@TAG_ORIGIN_VOLUME@'].Value[]" \
    | tr '\t\n' '  ') "
  waiting=$(spotkit_ec2 describe-volumes --filters Name=tag:@TAG_GROUP@,Values="$group" \
    Name=tag:@TAG_DEVICE@,Values="$dev" Name=tag:@TAG_RETAIN@,Values=true Name=status,Values=available \
    --query "reverse(sort_by(Volumes,&CreateTime))[].[VolumeId,AvailabilityZone]") || return 1
  while read -r id az; do
    spotkit_some "$id" || continue
    case "$origins" in *" $id "*) continue ;; esac  # copied to another AZ: the copy supersedes it
    if [ "$az" = "$AZ" ]; then here="$here $id"; else elsewhere="$elsewhere $id ($az)"; fi
  done <<< "$waiting"
  for id in $here; do
    if spotkit_ec2 attach-volume --volume-id "$id" --instance-id "$IID" --device "$dev" >/dev/null; then
      spotkit_ec2 wait volume-in-use --volume-ids "$id" && { echo "spotkit: re-attached retained $id as $dev" >&2; echo "$id"; return 0; }
    fi
    echo "spotkit: could not attach $id as $dev (another instance may have taken it); trying the next" >&2
  done
  if [ -n "$elsewhere" ] && [ "$other" = wait ]; then
    echo "spotkit: retained volume(s)$elsewhere of group $group for $dev wait in another AZ than $AZ;" \
      "run 'spotkit recover volumes --group $group' to copy one here (it snapshots, never deletes)" >&2
    return 2
  fi
  vol=$(spotkit_ec2 create-volume --availability-zone "$AZ" --client-token "$IID$dev" "$@" --query VolumeId) || return 1
  spotkit_ec2 wait volume-available --volume-ids "$vol" || return 1
  spotkit_ec2 attach-volume --volume-id "$vol" --instance-id "$IID" --device "$dev" >/dev/null || return 1
  spotkit_ec2 wait volume-in-use --volume-ids "$vol" || return 1
  echo "spotkit: created data volume $vol as $dev" >&2
  echo "$vol"
}

# spotkit_wait_then_mount DEVICE MOUNT_POINT MINUTES: mount the device once something attaches it.
spotkit_wait_then_mount() {
  local dev=$1 mnt=$2 vol n
  for n in $(seq 1 $(( $3 * 6 ))); do
    vol=$(spotkit_attached_volume "$dev")
    if spotkit_some "$vol"; then
      spotkit_ec2 wait volume-in-use --volume-ids "$vol"
      spotkit_mount_data_volume "$vol" "$dev" "$mnt" && echo "spotkit: $vol attached as $dev, mounted at $mnt"
      return
    fi
    sleep 10
  done
  echo "spotkit: nothing was attached as $dev within $3 minutes; $mnt is not mounted"
  return 1
}

# spotkit_data_volume GROUP DEVICE MOUNT_POINT IN_OTHER_AZ WAIT_MINUTES CREATE_ARGS...
spotkit_data_volume() {
  local group=$1 dev=$2 mnt=$3 other=$4 minutes=$5 vol rc
  shift 5
  vol=$(spotkit_claim_data_volume "$group" "$dev" "$other" "$@"); rc=$?
  case $rc in
    0) spotkit_mount_data_volume "$vol" "$dev" "$mnt" ;;
    2) export -f spotkit_wait_then_mount spotkit_mount_data_volume spotkit_attached_volume spotkit_ec2 spotkit_some
       export IID REGION
       echo "spotkit: $mnt will be mounted when a volume is attached as $dev (waiting up to $minutes minutes)"
       setsid bash -c 'spotkit_wait_then_mount "$@"' spotkit-data-wait "$dev" "$mnt" "$minutes" \
         </dev/null >>"$SPOTKIT_LOG" 2>&1 & ;;
    *) echo "spotkit: no data volume for $dev (see above); $mnt is not mounted" ;;
  esac
}
"""
# The tag keys come from the contract (toolkit.notice), filled in where the template says @TAG_...@.
CLAIM_FUNCTIONS = _CLAIM_TEMPLATE
for _name in ("TAG_GROUP", "TAG_DEVICE", "TAG_RETAIN", "TAG_ORIGIN_VOLUME"):
    CLAIM_FUNCTIONS = CLAIM_FUNCTIONS.replace(f"@{_name}@", getattr(notice, _name))


def create_volume_args(*, size_gib: int, volume_type: str, iops: int, throughput_mibps: int,
                       kms_key_id: str | None, tags: Mapping[str, str]) -> list[str]:
    """The ``aws ec2 create-volume`` arguments of a new data volume (tags applied at creation)."""
    args = ["--size", str(size_gib), "--volume-type", volume_type, "--encrypted"]
    if volume_type in ("gp3", "io1", "io2"):
        args += ["--iops", str(iops)]
    if volume_type == "gp3":
        args += ["--throughput", str(throughput_mibps)]
    if kms_key_id:
        args += ["--kms-key-id", kms_key_id]
    spec = [{"ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    return args + ["--tag-specifications", json.dumps(spec, separators=(",", ":"))]


def _data_dir_line(volumes: Sequence) -> str:
    """Workloads find the first volume's mount point as SPOTKIT_DATA_DIR (callers give at least one volume)."""
    return f"spotkit_set_data_dir {shlex.quote(volumes[0].mount_point)}"


def claim_script(volumes: Sequence, *, group_name: str, tags_for) -> str:
    """Boot part of a compute group: claim (re-attach or create) and mount each data volume.

    ``volumes`` are ``DataVolumeSettings``; ``tags_for(device)`` gives the tags a new volume gets.
    """
    lines = [PREAMBLE.rstrip(), CLAIM_FUNCTIONS.rstrip(), FUNCTIONS_END]
    for v in volumes:
        create = create_volume_args(size_gib=v.size_gib, volume_type=v.volume_type, iops=v.iops,
                                    throughput_mibps=v.throughput_mibps, kms_key_id=v.kms_key_id,
                                    tags=tags_for(v.device_name))
        call = ["spotkit_data_volume", group_name, v.device_name, v.mount_point, v.in_other_az,
                str(v.wait_minutes), *create]
        lines += [f"# data volume {v.device_name} -> {v.mount_point} (kept on terminate, re-attached to the next instance)",
                  " ".join(shlex.quote(a) for a in call)]
    return "\n".join(lines + [_data_dir_line(volumes)])


def attached_script(volumes: Sequence) -> str:
    """Boot part of a standalone instance whose volume Terraform attaches: wait for it, then mount it."""
    lines = [PREAMBLE.rstrip(), FUNCTIONS_END]
    for v in volumes:
        dev, mnt = shlex.quote(v.device_name), shlex.quote(v.mount_point)
        lines += [
            f"# data volume {v.device_name} -> {v.mount_point} (attached by Terraform, kept on terminate)",
            "VOL=None",
            f'for i in $(seq 1 30); do VOL=$(spotkit_attached_volume {dev}); spotkit_some "$VOL" && break; sleep 5; done',
            f'if spotkit_some "$VOL"; then spotkit_mount_data_volume "$VOL" {dev} {mnt}; '
            f'else echo "spotkit: no volume attached as {v.device_name}; {v.mount_point} is not mounted"; fi',
        ]
    return "\n".join(lines + [_data_dir_line(volumes)])
