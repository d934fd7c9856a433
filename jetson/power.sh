#!/usr/bin/env bash
# Power mode and clocks. Usage: sudo ./power.sh max|default|status
#   max:     the board's top power mode (the one nvpmodel.conf names MAXN / MAXN_SUPER; its number
#            differs between Orin modules) + jetson_clocks (clocks pinned at their maximum: lowest,
#            steadiest latency, more power and heat)
#   default: restore the clocks saved before `max` and the board's default power mode
#   status:  print the current mode and clocks
# The saved clock state lives in a root-only folder: `jetson_clocks --restore` runs as root and writes
# every path:value line of that file, so nobody but root may be able to write it (in particular not
# the edge-fas service user, which owns /var/lib/edge-fas).
set -euo pipefail
STATE_DIR="${EDGE_FAS_POWER_STATE:-/var/lib/edge-fas-power}"
SAVED="$STATE_DIR/jetson_clocks.conf"
NVPMODEL_CONF="${NVPMODEL_CONF:-/etc/nvpmodel.conf}"

if [ "$(id -u)" -ne 0 ]; then
  echo "power.sh: run with sudo (nvpmodel and jetson_clocks need root)" >&2; exit 1
fi

top_mode() {
  # "< POWER_MODEL ID=2 NAME=MAXN_SUPER >": prefer MAXN_SUPER (JetPack 6.2 Orin Nano/NX), else MAXN
  local id
  id="$(sed -n 's/^< POWER_MODEL ID=\([0-9]*\) NAME=MAXN_SUPER >.*/\1/p' "$NVPMODEL_CONF" | head -n1)"
  [ -n "$id" ] || id="$(sed -n 's/^< POWER_MODEL ID=\([0-9]*\) NAME=MAXN >.*/\1/p' "$NVPMODEL_CONF" | head -n1)"
  if [ -z "$id" ]; then
    echo "power.sh: no MAXN mode in $NVPMODEL_CONF; pick one from 'nvpmodel -q --verbose' and run nvpmodel -m N" >&2
    exit 1
  fi
  echo "$id"
}

trusted_state() {
  # refuse a saved state that is not a root-owned file in a root-owned folder, writable by root only
  local path="$1" owner mode
  for p in "$STATE_DIR" "$path"; do
    [ -L "$p" ] && { echo "power.sh: $p is a symbolic link; refusing to restore from it" >&2; return 1; }
    owner="$(stat -c %u "$p")"; mode="$(stat -c %a "$p")"
    if [ "$owner" != 0 ] || [ $((8#$mode & 8#022)) -ne 0 ]; then
      echo "power.sh: $p is not root-only (owner uid $owner, mode $mode); refusing to restore from it" >&2
      return 1
    fi
  done
}

case "${1:-status}" in
  max)
    install -d -m 0700 -o root -g root "$STATE_DIR"
    [ -f "$SAVED" ] || jetson_clocks --store "$SAVED"
    chmod 0600 "$SAVED"
    MODE="$(top_mode)"
    echo "power.sh: nvpmodel mode $MODE ($(sed -n "s/^< POWER_MODEL ID=$MODE NAME=\([A-Z0-9_]*\) >.*/\1/p" "$NVPMODEL_CONF"))"
    nvpmodel -m "$MODE"
    jetson_clocks
    ;;
  default)
    if [ -f "$SAVED" ] && trusted_state "$SAVED"; then
      jetson_clocks --restore "$SAVED"
    fi
    # the default mode number differs per module; nvpmodel.conf names it
    DEFAULT_MODE="$(sed -n 's/^< PM_CONFIG DEFAULT=\([0-9]*\) >.*/\1/p' "$NVPMODEL_CONF")"
    nvpmodel -m "${DEFAULT_MODE:-0}"
    ;;
  status)
    nvpmodel -q
    jetson_clocks --show
    ;;
  *) echo "power.sh: use max, default or status" >&2; exit 2 ;;
esac
