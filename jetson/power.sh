#!/usr/bin/env bash
# Power mode and clocks. Usage: sudo ./power.sh max|default|status
#   max:     nvpmodel mode 0 (MAXN on Orin; the board's highest mode) + jetson_clocks (clocks pinned
#            at their maximum: lowest, steadiest latency, more power and heat)
#   default: restore the clocks saved before `max` and the board's default power mode
#   status:  print the current mode and clocks
set -euo pipefail
SAVED=/var/lib/edge-fas/jetson_clocks.conf
case "${1:-status}" in
  max)
    mkdir -p "$(dirname "$SAVED")"
    [ -f "$SAVED" ] || jetson_clocks --store "$SAVED"
    nvpmodel -m 0
    jetson_clocks
    ;;
  default)
    [ -f "$SAVED" ] && jetson_clocks --restore "$SAVED"
    # the default mode number differs per module; nvpmodel.conf names it
    DEFAULT_MODE="$(sed -n 's/^< PM_CONFIG DEFAULT=\([0-9]*\) >.*/\1/p' /etc/nvpmodel.conf)"
    nvpmodel -m "${DEFAULT_MODE:-0}"
    ;;
  status)
    nvpmodel -q
    jetson_clocks --show
    ;;
  *) echo "power.sh: use max, default or status" >&2; exit 2 ;;
esac
