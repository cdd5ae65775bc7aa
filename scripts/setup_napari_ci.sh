#!/usr/bin/env bash
# Install what the napari GUI tests need and check that it works; exit non-zero when it does not.
#   apt: Xvfb + Mesa (software OpenGL; Qt's offscreen platform has no OpenGL here) + the Qt xcb
#        libraries, only the missing ones;
#   pip: the requirements of the `napari` extra in pyproject.toml (napari, PyQt6, magicgui,
#        pytest-qt) into $PYTHON. Only the extra's requirements: sam-med itself must already be
#        installed (the Makefile installs it editable), so an editable install elsewhere is
#        never re-pointed at this checkout.
# Then a smoke check: a napari viewer with an OpenGL canvas opens under xvfb-run.
# Usage (CI, Makefile `test`):  PYTHON=.venv/bin/python scripts/setup_napari_ci.sh
set -euo pipefail
PKGS="xvfb xauth libgl1-mesa-dri libglx-mesa0 libegl1 libxkbcommon-x11-0 libxcb-cursor0 \
libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 \
libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-xkb1 libdbus-1-3 libfontconfig1"
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
"$PY" -c "import sam_med" || { echo "setup_napari_ci: sam-med is not installed in $PY" >&2; exit 1; }
mapfile -t REQS < <("$PY" - "$ROOT/pyproject.toml" <<'EOF'
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["napari"]))
EOF
)
"$PY" -m pip install -q "${REQS[@]}"
# the smoke check: Qt (PyQt6) + napari + an OpenGL context from Mesa under Xvfb
QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1280x1024x24" "$PY" - <<'EOF'
import napari
from qtpy import API_NAME

viewer = napari.Viewer(show=True)
viewer.add_image(__import__("numpy").zeros((4, 8, 8)))
shot = viewer.screenshot(canvas_only=True, flash=False)
viewer.close()
print(f"napari {napari.__version__} on {API_NAME}: viewer under Xvfb OK (canvas {shot.shape})")
EOF
