#!/usr/bin/env bash
# dev/cold-check.sh: proves the README's two commands on a fresh machine.
#
# A machine that already has the packages hides install bugs, so this builds
# one that has none: a minimal Debian 12 root (debootstrap --variant=minbase,
# kept pristine in ROOT_DIR.base and copied fresh for every run) with a
# /usr/sbin/policy-rc.d that refuses to start services, as container-built
# images ship. Into it go only what a new machine of this project's kind
# brings that Debian's minimal base does not: make, git, CA certificates with
# the machine's own trusted CAs (its registries are reached through an egress
# proxy that presents them) and the clients' settings that point at them, and
# the machine's Rust toolchain (bind-mounted read-only: rustup cannot download
# one here), with an empty cargo home so every crate is fetched and compiled
# cold. Then, as root inside it, in a fresh clone of HEAD with the shared
# directory beside it, it times
#
#   make up      (`make run` in the background: installs, starts, builds, runs)
#   make down    (stops the services, so `make test` starts from the stack only)
#   make test    (the README's second command, which .ci/run calls)
#
# The services bind the stack's loopback ports, so the host's own stack must be
# down first (`make down`). Needs root and debootstrap (apt-get install
# debootstrap). Usage: dev/cold-check.sh [ROOT_DIR] (default /srv/cold-check).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOTFS=${1:-/srv/cold-check}
SHARED=${SHARED_DIR:-$REPO/../shared}
LOG=$ROOTFS.log
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

die() { printf 'cold-check: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "run as root"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
[[ -d $SHARED ]] || die "no shared directory at $SHARED (set SHARED_DIR)"
for port in 5432 5672 6379 7480 8080 9090 15672 15674; do
    if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
        die "port $port is in use: stop the host's stack first (make down)"
    fi
done
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
[[ -d $rustup_home && -x $cargo_bin/cargo ]] || die "no rustup toolchain in $rustup_home"

mounts=()
# shellcheck disable=SC2317 # runs from the EXIT trap
cleanup() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() { # bind SRC DEST [ro]
    mkdir -p "$2"
    mount --bind "$1" "$2"
    mounts+=("$2")
    if [[ ${3:-} == ro ]]; then mount -o remount,bind,ro "$2"; fi
}

if [[ ! -x $ROOTFS.base/usr/bin/apt-get ]]; then
    echo "cold-check: debootstrap bookworm into $ROOTFS.base (a few minutes)" >&2
    rm -rf "$ROOTFS.base"
    debootstrap --variant=minbase bookworm "$ROOTFS.base" "$MIRROR" >"$LOG" 2>&1 ||
        die "debootstrap failed; see $LOG"
fi
rm -rf "$ROOTFS"
cp -a "$ROOTFS.base" "$ROOTFS"
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
chmod +x "$ROOTFS/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
# The machine's trusted CAs and the clients' settings that use them.
mkdir -p "$ROOTFS/usr/local/share/ca-certificates" "$ROOTFS/root"
cp -a /usr/local/share/ca-certificates/. "$ROOTFS/usr/local/share/ca-certificates/"
for f in /etc/pip.conf /root/.npmrc; do
    if [[ -f $f ]]; then cp "$f" "$ROOTFS$f"; fi
done

bind /proc "$ROOTFS/proc"
bind /sys "$ROOTFS/sys"
bind /dev "$ROOTFS/dev"
bind /dev/pts "$ROOTFS/dev/pts"
mkdir -p "$ROOTFS/dev/shm"
mount -t tmpfs tmpfs "$ROOTFS/dev/shm"
mounts+=("$ROOTFS/dev/shm")
bind "$rustup_home" "$ROOTFS/opt/rustup" ro
mkdir -p "$ROOTFS/opt/cargo/bin"
cp -a "$cargo_bin/." "$ROOTFS/opt/cargo/bin/"
bind "$SHARED" "$ROOTFS/work/shared" ro

rm -rf "$ROOTFS/work/main"
git clone -q "$REPO" "$ROOTFS/work/main"
git -C "$ROOTFS/work/main" checkout -q "$(git -C "$REPO" rev-parse HEAD)"

in_root() {
    local ca=/etc/ssl/certs/ca-certificates.crt
    chroot "$ROOTFS" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
        SSL_CERT_FILE=$ca CURL_CA_BUNDLE=$ca PIP_CERT=$ca REQUESTS_CA_BUNDLE=$ca \
        NODE_EXTRA_CA_CERTS=$ca GIT_SSL_CAINFO=$ca AWS_CA_BUNDLE=$ca \
        PATH=/opt/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        RUSTUP_HOME=/opt/rustup CARGO_HOME=/root/.cargo RUSTUP_TOOLCHAIN="$(rustup show active-toolchain | cut -d' ' -f1)" \
        CI=true bash -c "$1"
}

echo "cold-check: what a new machine of this kind brings: make, git, CA certificates" >&2
in_root 'apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends make git ca-certificates >/dev/null && update-ca-certificates >/dev/null'
in_root 'dpkg-query -W postgresql redis-server rabbitmq-server radosgw nodejs gcc 2>/dev/null | wc -l' |
    grep -qx 0 || die "the root already has some of the stack's packages"

status=0
timed() { # timed NAME COMMAND
    local t0=$SECONDS rc=0
    in_root "cd /work/main && $2" >"$ROOTFS.$1.log" 2>&1 || rc=$?
    printf 'cold-check: %-10s %s after %d s (log: %s)\n' "$1" "$([[ $rc == 0 ]] && echo ok || echo "FAILED ($rc)")" \
        $((SECONDS - t0)) "$ROOTFS.$1.log"
    return "$rc"
}
timed make-up 'make up' || status=1
timed make-down 'make down' || status=1
timed make-test 'make test' || status=1
in_root 'cd /work/main && make down' >/dev/null 2>&1 || true
tail -2 "$ROOTFS.make-test.log"
exit "$status"
