#!/usr/bin/env bash
# npm run test:container
# The entrypoint where users deploy it: a real container runtime (podman 4 with runc, from Debian),
# a test image made from this checkout, and test/container/container.test.ts run against it under
# each security option (the runtime's default seccomp profile, seccomp=unconfined, --cap-add
# SYS_ADMIN, --cap-add SYS_ADMIN,NET_ADMIN, --privileged).
#
# No registry is reachable: the base image is `debootstrap --variant=minbase bookworm` with
# python3 and libseccomp2, imported with `podman import`. It is kept as a tarball in
# $MODELGUARD_CONTAINER_CACHE (default /var/cache/modelguard-ci), named by a hash of what goes in
# it (suite, variant, packages, mirror), so only the first run on a machine pays for debootstrap.
# The test image adds this checkout's build (dist, bin, the native addon and guard-exec, the
# production node_modules), this machine's Node (the native parts were built against it) and the
# probes (attack.c, probe.c) compiled here.
#
# Host facts (issue 16): crun fails on this host's hybrid cgroups, so runc; podman's default
# ulimits exceed what root may set here, so a containers.conf of our own (CONTAINERS_CONF) with
# lower ones.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${MODELGUARD_CONTAINER_CACHE:-/var/cache/modelguard-ci}"
suite=bookworm
mirror="${MODELGUARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages="python3,libseccomp2"
export DEBIAN_FRONTEND=noninteractive

say() { printf 'test:container: %s\n' "$*" >&2; }
t0=$(date +%s)

need=()
for p in podman runc debootstrap uidmap slirp4netns fuse-overlayfs; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cc >/dev/null || { say "cc is needed to compile the probes"; exit 2; }

mkdir -p "$cache"
conf="$cache/containers.conf"
cat >"$conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$conf"

key=$(printf '%s\n' "base-v1" "$suite" minbase "$packages" "$mirror" | sha256sum | cut -c1-16)
base="localhost/modelguard-ci-base:$key"
tarball="$cache/base-$key.tar"
if ! podman image exists "$base"; then
  if [ ! -s "$tarball" ]; then
    say "debootstrap $suite (minbase, $packages) into the cache (first run on this machine)"
    rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
    debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
      { tail -20 "$cache/debootstrap.log" >&2; rm -rf "$rootfs"; exit 2; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
  fi
  podman import "$tarball" "$base" >/dev/null
fi
t1=$(date +%s)
say "base image $base ($((t1 - t0)) s)"

[ -f "$root/dist/test/container/container.test.js" ] || (cd "$root" && npm run build)
stage=$(mktemp -d /var/tmp/modelguard-ci-image.XXXXXX)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/modelguard/build/Release" "$stage/probes"
cp -r "$root/package.json" "$root/binding.gyp" "$root/bin" "$root/dist" "$root/sandbox-profiles" "$root/src" "$stage/modelguard/"
cp "$root/build/Release/modelguard.node" "$root/build/Release/guard-exec" "$stage/modelguard/build/Release/"
# Production dependencies only (the runtime image of the Dockerfile has no TypeScript or esbuild either).
cp -rL "$root/node_modules" "$stage/modelguard/node_modules"
for dev in typescript esbuild @esbuild @types fast-check uvu @microsoft ajv ajv-draft-04; do rm -rf "$stage/modelguard/node_modules/$dev"; done
cp "$(command -v node)" "$stage/node"
# The scanner's caches (the Pyodide snapshot, compiled BPF), made here once and kept with the base
# image: without them every container would spend its first ~15 s making them again.
/usr/bin/python3 -c 'import pickle, sys; open(sys.argv[1], "wb").write(pickle.dumps({"w": [1.0]}))' "$stage/warm.pkl"
MODELGUARD_CACHE_DIR="$cache/guard-cache" node "$root/dist/src/cli/main.js" scan "$stage/warm.pkl" >/dev/null
mkdir -p "$stage/guard-cache" && cp -r "$cache/guard-cache/." "$stage/guard-cache/"
cc -O2 -pthread -o "$stage/probes/attack" "$root/test/fixtures/sandbox/attack.c"
cc -O2 -o "$stage/probes/probe" "$root/test/fixtures/sandbox/probe.c"
cat >"$stage/Containerfile" <<EOF
FROM $base
COPY node /usr/local/bin/node
COPY modelguard /opt/modelguard
COPY probes /opt/probes
COPY guard-cache /root/.cache/modelguard
RUN ln -s /opt/modelguard/bin/guard /usr/local/bin/guard && mkdir -p /models /reports
ENTRYPOINT ["guard", "entrypoint", "--"]
EOF
image=localhost/modelguard-ci-test:latest
previous=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
podman build -q -t "$image" "$stage" >/dev/null
# The last run's test image, now untagged: only this script made it.
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$image")" ]; then podman rmi "$previous" >/dev/null 2>&1 || true; fi
t2=$(date +%s)
say "test image $image ($((t2 - t1)) s)"

cd "$root"
MODELGUARD_CONTAINER_IMAGE="$image" node scripts/run-tests.mjs '^container/'
t3=$(date +%s)
say "suite $((t3 - t2)) s; total $((t3 - t0)) s"
