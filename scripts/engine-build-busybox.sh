#!/bin/sh
# Build a tiny busybox image offline from Debian's static busybox (/bin/busybox) with umoci + skopeo.
#
#   scripts/engine-build-busybox.sh OUT [FORMAT] [REF]
#
#   OUT     path of the archive to write (e.g. /tmp/kr/busybox.oci.tar)
#   FORMAT  oci-archive (default) or docker-archive
#   REF     image reference recorded in the archive (default kr/busybox:latest)
#
# Idempotent: if OUT already exists and is newer than /bin/busybox and this script, nothing is done.
# Needs: busybox-static (/bin/busybox), umoci, skopeo (apt-get install -y busybox-static umoci skopeo).
set -eu

OUT=${1:?usage: $0 OUT [oci-archive|docker-archive] [REF]}
FORMAT=${2:-oci-archive}
REF=${3:-kr/busybox:latest}
BUSYBOX=${BUSYBOX:-/bin/busybox}

case "$FORMAT" in
  oci-archive|docker-archive) ;;
  *) echo "unknown format: $FORMAT (oci-archive|docker-archive)" >&2; exit 2 ;;
esac

for tool in umoci skopeo; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool not found (apt-get install -y $tool)" >&2; exit 1; }
done
[ -x "$BUSYBOX" ] || { echo "$BUSYBOX not found (apt-get install -y busybox-static)" >&2; exit 1; }
# A dynamically linked busybox would not run inside an otherwise empty rootfs.
if command -v file >/dev/null 2>&1 && ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
  echo "$BUSYBOX is not statically linked" >&2; exit 1
fi

if [ -s "$OUT" ] && [ "$OUT" -nt "$BUSYBOX" ] && [ "$OUT" -nt "$0" ]; then
  exit 0
fi

OUTDIR=$(dirname -- "$OUT")
mkdir -p "$OUTDIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kr-busybox-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

ROOT=$WORK/root
mkdir -p "$ROOT/bin" "$ROOT/sbin" "$ROOT/usr/bin" "$ROOT/usr/sbin" "$ROOT/etc" "$ROOT/tmp" "$ROOT/root" \
  "$ROOT/proc" "$ROOT/sys" "$ROOT/dev"
chmod 1777 "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
chmod 0755 "$ROOT/bin/busybox"
# One relative symlink per applet, all in /bin (busybox --install -s would write host-absolute links).
for applet in $("$BUSYBOX" --list); do
  [ "$applet" = busybox ] && continue
  ln -sf busybox "$ROOT/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$ROOT/etc/group"

case "$(uname -m)" in
  x86_64) ARCH=amd64 ;; aarch64) ARCH=arm64 ;; armv7l) ARCH=arm ;; *) ARCH=$(uname -m) ;;
esac

# Fixed timestamps make the layer (and so its diff ID) identical across builds.
find "$ROOT" -exec touch -h -d @0 {} +

LAYOUT=$WORK/oci
# The config's `created` times still differ between builds (umoci 0.4.7 ignores SOURCE_DATE_EPOCH).
umoci init --layout "$LAYOUT" >/dev/null
umoci new --image "$LAYOUT:latest" >/dev/null
umoci insert --image "$LAYOUT:latest" "$ROOT" / >/dev/null
umoci config --image "$LAYOUT:latest" --config.cmd /bin/sh --config.workingdir / \
  --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin --os linux --architecture "$ARCH" >/dev/null

TMPOUT=$OUT.tmp.$$
rm -f "$TMPOUT"
skopeo --insecure-policy copy --quiet "oci:$LAYOUT:latest" "$FORMAT:$TMPOUT:$REF" >/dev/null
mv -f "$TMPOUT" "$OUT"
