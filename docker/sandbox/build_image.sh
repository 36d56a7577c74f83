#!/usr/bin/env bash
# Build the sandbox image locally, without any registry:
#   1. evoforge-sandbox-base:bookworm  from `debootstrap --variant=minbase --include=python3 bookworm`
#      + `docker import` (skipped when that image already exists);
#   2. evoforge-sandbox:<version>      FROM the base, with the project's envs/ package (Dockerfile here).
# Usage: docker/sandbox/build_image.sh [TAG]     (needs root for debootstrap, and a Docker daemon:
#        DOCKER_HOST selects it, e.g. DOCKER_HOST=unix:///tmp/x/docker.sock)
# Exit:  0 built; 2 a prerequisite is missing (debootstrap, root); 3 debootstrap failed (mirror
#        unreachable?); anything else: the import or the docker build failed.
# Env:   EVOFORGE_SANDBOX_BASE (base tag), DEBIAN_MIRROR (default: this machine's apt mirror),
#        EVOFORGE_REBUILD_BASE=1 (debootstrap again even if the base exists).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$root/pyproject.toml" | head -n1)
image=${1:-evoforge-sandbox:${version:-latest}}
base=${EVOFORGE_SANDBOX_BASE:-evoforge-sandbox-base:bookworm}
suite=bookworm
export DOCKER_BUILDKIT=0  # the classic builder: no buildx plugin needed, works against any dockerd

log() { printf '[build_image] %s\n' "$*" >&2; }

# The Debian mirror this machine's apt uses (deb822 "URIs:" or one-line "deb URI suite"), not the security one.
detect_mirror() {
    local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
    local uri
    uri=$(cat "${files[@]}" 2>/dev/null | sed -n \
        -e 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' \
        -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\)[[:space:]]\+bookworm[[:space:]].*/\2/p' \
        | grep -i debian | grep -v -i security | head -n1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

t0=$(date +%s)
if [[ -z "${EVOFORGE_REBUILD_BASE:-}" ]] && docker image inspect "$base" >/dev/null 2>&1; then
    log "base image $base exists: skipping debootstrap"
else
    command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install -y --no-install-recommends debootstrap"; exit 2; }
    [[ $(id -u) == 0 ]] || { log "debootstrap needs root"; exit 2; }
    mirror=${DEBIAN_MIRROR:-$(detect_mirror)}
    rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/evoforge-rootfs.XXXXXX")
    trap 'rm -rf --one-file-system "$rootfs"' EXIT
    log "debootstrap $suite from $mirror into $rootfs"
    if ! debootstrap --variant=minbase --include=python3 "$suite" "$rootfs" "$mirror" >&2; then
        log "debootstrap failed: is $mirror reachable from here? (set DEBIAN_MIRROR to another mirror)"
        exit 3
    fi
    # Slim it: package caches, docs, man pages and apt lists are dead weight in a sandbox.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
           "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
           "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*
    tar --numeric-owner -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --message "debootstrap --variant=minbase --include=python3 $suite $mirror" - "$base" >&2
    rm -rf --one-file-system "$rootfs"
    trap - EXIT
    log "base image $base imported in $(( $(date +%s) - t0 )) s"
fi

# A small, explicit build context: the Dockerfile, its .dockerignore and envs/ (nothing else of the repo).
ctx=$(mktemp -d "${TMPDIR:-/tmp}/evoforge-sandbox-ctx.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
cp "$here/Dockerfile" "$here/.dockerignore" "$ctx/"
cp -r "$root/envs" "$ctx/envs"
docker build --network none --build-arg "BASE=$base" --build-arg "VERSION=${version:-unknown}" \
    -t "$image" "$ctx" >&2
log "built $image in $(( $(date +%s) - t0 )) s"
echo "$image"
