#!/bin/sh
# The system packages EvoForge needs, installed the same way by `make run`, `make test` and `.ci/run`.
#
#   scripts/system-deps.sh run    what the product needs: bubblewrap (the sandbox for model-written code)
#   scripts/system-deps.sh test   also what the tests use: unshare + ip (a private network namespace),
#                                 docker.io + debootstrap (the Docker sandbox backend and its image),
#                                 runsc (gVisor, the optional Docker runtime),
#                                 chromium-headless-shell (renders `evoforge report` pages in the tests)
#
# As root it installs what is missing with apt-get. Without root it prints the exact command and exits 1,
# so nothing that would run untrusted code starts without its sandbox.
set -eu
what=${1:-run}
case "$what" in run|test) ;; *) echo "usage: $0 run|test" >&2; exit 2 ;; esac

need=""
want() { command -v "$1" >/dev/null 2>&1 || need="$need $2"; }
want bwrap bubblewrap
if [ "$what" = test ]; then
  want unshare util-linux
  want ip iproute2
  want dockerd docker.io
  want debootstrap debootstrap
  want runsc runsc
  want chromium-headless-shell chromium-headless-shell
fi
[ -z "$need" ] && exit 0

cmd="apt-get update -q && apt-get install -y -q --no-install-recommends$need"
if [ "$(id -u)" != 0 ]; then
  echo "EvoForge needs system packages that are not installed:$need" >&2
  echo "Install them as root, then run make again:" >&2
  echo "  sudo sh -c '$cmd'" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "EvoForge needs:$need; this machine has no apt-get: install the same packages with its package manager" >&2
  exit 1
fi
echo "installing system packages:$need"
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need >/dev/null
