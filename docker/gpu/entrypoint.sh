#!/usr/bin/env bash
# Entry point of the EvoForge GPU image (KubeRay replaces it with its own `ray start` command).
#
#   head   [ray start flags]               the Ray head (GCS, dashboard and job server on 8265); blocks
#   worker [HOST:PORT] [ray start flags]   a Ray worker joining the head's GCS at HOST:PORT
#                                          (default: $RAY_HEAD_ADDRESS); blocks
#   anything else                          run as given, e.g. `python -m cluster.train ...` or `bash`
#
# GPUs and CPUs are detected by Ray; pass e.g. --num-gpus or --resources to override. Ray's token
# authentication follows RAY_AUTH_MODE / RAY_AUTH_TOKEN, which must be the same on every node.
set -euo pipefail

die() { echo "evoforge-entrypoint: $*" >&2; exit 64; }

case "${1:-}" in
  head)
    shift
    exec ray start --head --block \
      --port="${RAY_GCS_PORT:-6379}" \
      --dashboard-host=0.0.0.0 --dashboard-port="${RAY_DASHBOARD_PORT:-8265}" \
      "$@"
    ;;
  worker)
    shift
    address=${RAY_HEAD_ADDRESS:-}
    if [[ $# -gt 0 && $1 != -* ]]; then
      address=$1
      shift
    fi
    [[ -n $address ]] || die "worker needs the head's address: worker HOST:PORT, or RAY_HEAD_ADDRESS=HOST:PORT"
    exec ray start --address="$address" --block "$@"
    ;;
  "")
    die "usage: head [flags] | worker [HOST:PORT] [flags] | COMMAND [ARGS]"
    ;;
  *)
    exec "$@"
    ;;
esac
