#!/usr/bin/env bash
# Set up echoposed on a machine with no ROS 2 distribution. Idempotent: a second run with
# nothing changed only checks stamps (a few seconds).
#
#   1. .venv with Python 3.11 and every pinned dependency of requirements.txt (ROS 2 wheels included)
#   2. echoposed_msgs built with cmake against those wheels and installed into .venv
#      (the wheels' foreign CMake paths are mapped by scripts/wheel_prefix_fix.cmake, in memory)
#   3. echoposed itself, installed editable into .venv (console scripts in .venv/bin)
#   4. .venv made an ament prefix holding echoposed (scripts/ament_prefix.py: resource index entry,
#      share/echoposed linked to the work tree, lib/echoposed/<executables>), so that with
#      `source scripts/env.sh` ROS tools find it (ros2 run / ros2 launch echoposed ...)
#
# Everything lands inside the repository (.venv/, build/), both git-ignored. Needs no root.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
py="$venv/bin/python"
log() { printf '[setup] %s\n' "$*"; }

# Hash of the given files' contents (paths relative to the root).
stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
stamp_ok() { [ -f "$venv/.stamp-$1" ] && [ "$(cat "$venv/.stamp-$1")" = "$2" ]; }
stamp_set() { echo "$2" > "$venv/.stamp-$1"; }
# Run a command with its output in a log file; on failure show the log's tail and stop.
quiet() { local logfile="$1"; shift; "$@" > "$logfile" 2>&1 || { tail -40 "$logfile"; echo "[setup] failed: $* (log: $logfile)"; exit 1; }; }

# 1. virtual environment and pinned dependencies
if [ ! -x "$py" ] || ! "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  base_python="$(command -v python3.11 || command -v python3)"
  "$base_python" -c 'import sys; assert sys.version_info[:2] == (3, 11), "echoposed needs Python 3.11 (the ROS 2 Kilted wheels are cp311), found %s" % sys.version.split()[0]'
  log "creating .venv with $base_python"
  rm -rf "$venv"
  "$base_python" -m venv "$venv"
fi
req_stamp="$(stamp_of requirements.txt constraints.txt)"
if ! stamp_ok requirements "$req_stamp"; then
  log "installing requirements.txt (under constraints.txt) into .venv"
  quiet "$venv/pip-requirements.log" "$py" -m pip install --disable-pip-version-check -r requirements.txt -c constraints.txt
  "$py" -m pip check >/dev/null || { "$py" -m pip check; exit 1; }
  stamp_set requirements "$req_stamp"
fi

# 2. interface package, built against the wheels (share/ and lib/ of the venv form an ament prefix)
msgs_stamp="$(stamp_of requirements.txt scripts/wheel_prefix_fix.cmake echoposed_msgs/CMakeLists.txt echoposed_msgs/package.xml echoposed_msgs/msg/* echoposed_msgs/srv/*)"
if ! stamp_ok msgs "$msgs_stamp"; then
  log "building echoposed_msgs with cmake into .venv"
  build="$root/build/echoposed_msgs"
  rm -rf "$build"
  mkdir -p "$build"
  (
    export PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
    cmake -S echoposed_msgs -B "$build" \
      -DCMAKE_INSTALL_PREFIX="$venv" \
      -DPython3_EXECUTABLE="$py" \
      -DBUILD_TESTING=OFF \
      -DCMAKE_PROJECT_INCLUDE="$root/scripts/wheel_prefix_fix.cmake" > "$build/configure.log" 2>&1 \
      || { tail -40 "$build/configure.log"; echo "[setup] cmake configure of echoposed_msgs failed (log: $build/configure.log)"; exit 1; }
    cmake --build "$build" -j "$(nproc)" > "$build/build.log" 2>&1 \
      || { tail -40 "$build/build.log"; echo "[setup] build of echoposed_msgs failed (log: $build/build.log)"; exit 1; }
    cmake --install "$build" > "$build/install.log" 2>&1
  )
  stamp_set msgs "$msgs_stamp"
fi

# 3. echoposed itself (editable: the work tree is what runs)
pkg_stamp="$(stamp_of setup.py setup.cfg package.xml)"
if ! stamp_ok package "$pkg_stamp"; then
  log "installing echoposed (editable) into .venv"
  quiet "$venv/pip-echoposed.log" "$py" -m pip install --disable-pip-version-check --no-deps --no-build-isolation -e .
  stamp_set package "$pkg_stamp"
fi

# 4. ament prefix: the files colcon would install, as links (re-made when setup.py or the listed files change)
prefix_stamp="$({ cat setup.py setup.cfg package.xml scripts/ament_prefix.py; ls resource launch config models; } | sha256sum | cut -d' ' -f1)"
if ! stamp_ok ament "$prefix_stamp" || [ ! -e "$venv/share/ament_index/resource_index/packages/echoposed" ] \
    || [ ! -d "$venv/lib/echoposed" ] || [ ! -e "$venv/share/echoposed/package.xml" ]; then
  log "registering echoposed in the ament prefix .venv (share/echoposed, lib/echoposed)"
  "$py" scripts/ament_prefix.py "$venv"
  stamp_set ament "$prefix_stamp"
fi

"$py" -c 'import rclpy; from echoposed_msgs.msg import EchoPose' \
  || { echo "[setup] .venv cannot import rclpy and echoposed_msgs; remove .venv and run again"; exit 1; }
log "ready: $venv"
