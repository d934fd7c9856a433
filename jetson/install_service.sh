#!/usr/bin/env bash
# Install and start the headless service, and (optionally) the kiosk GUI autostart for USER.
# Usage: sudo ./install_service.sh [--kiosk USER]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ "$(id -u)" -ne 0 ]; then
  echo "install_service.sh: run with sudo" >&2; exit 1
fi
id edge-fas >/dev/null 2>&1 || { echo "install_service.sh: run setup.sh first (it creates the edge-fas user)" >&2; exit 1; }
install -m 0644 "$HERE/edge-fas.service" /etc/systemd/system/edge-fas.service
systemctl daemon-reload
systemctl enable --now edge-fas.service
if [ "${1:-}" = "--kiosk" ]; then
  KIOSK_USER="${2:?--kiosk needs a user name}"
  HOME_DIR="$(getent passwd "$KIOSK_USER" | cut -d: -f6)"
  install -d -o "$KIOSK_USER" "$HOME_DIR/.config/autostart"
  install -m 0644 -o "$KIOSK_USER" "$HERE/edge-fas-kiosk.desktop" "$HOME_DIR/.config/autostart/"
  echo "kiosk GUI starts at the next graphical login of $KIOSK_USER (enable auto-login in GDM)"
fi
systemctl --no-pager status edge-fas.service || true
