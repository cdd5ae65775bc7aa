#!/usr/bin/env bash
# Install what the napari GUI tests need: Xvfb + Mesa (software OpenGL) + the Qt xcb
# libraries (apt, only the missing ones), and the `napari` extra into the active Python.
# Usage (CI):  scripts/setup_napari_ci.sh && xvfb-run -a python -m pytest tests/test_napari_*.py
# Without a display the tests start their own Xvfb; without napari/Xvfb they skip.
set -euo pipefail
PKGS="xvfb xauth libgl1-mesa-dri libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcb-cursor0 \
libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 \
libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libdbus-1-3"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "apt: installing$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python}"
if ! "$PY" -c "import napari, PyQt5" 2>/dev/null; then
  # the extra pulls napari + PyQt5 only (torch is already installed, CPU build)
  "$PY" -m pip install -q -e "$ROOT[napari]"
fi
"$PY" -c "import napari; print('napari', napari.__version__, 'ready')"
