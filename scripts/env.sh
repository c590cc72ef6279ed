# Source me (bash or zsh), after scripts/setup.sh:   source scripts/env.sh
#
# Sets what ROS 2 tools need to find echoposed and the ROS 2 wheels in .venv, which scripts/setup.sh
# makes an ament prefix (share/ament_index, share/echoposed, lib/echoposed):
#   AMENT_PREFIX_PATH  .venv first (ament_index_python, ros2 run / ros2 launch echoposed ...)
#   PATH               .venv/bin first (python, echoposed, the node executables)
#   LD_LIBRARY_PATH    .venv/lib and the wheels' bundled libraries (site-packages/ros_*.libs)
#   ROS_VERSION=2, ROS_PYTHON_VERSION=3, ROS_DISTRO=kilted, when not set already
# Sourcing it again adds nothing twice. PYTHONPATH is left alone: every executable runs .venv's python.
if [ -n "${BASH_VERSION:-}" ]; then
  _echoposed_here="${BASH_SOURCE[0]}"
elif [ -n "${ZSH_VERSION:-}" ]; then
  _echoposed_here="${(%):-%x}"
else
  echo "scripts/env.sh: source it from bash or zsh" >&2
  return 1 2>/dev/null || exit 1
fi
_echoposed_venv="$(cd "$(dirname "$_echoposed_here")/.." && pwd)/.venv"
unset _echoposed_here

if [ ! -e "$_echoposed_venv/share/ament_index/resource_index/packages/echoposed" ]; then
  echo "scripts/env.sh: $_echoposed_venv is not set up as an ament prefix; run scripts/setup.sh first" >&2
  unset _echoposed_venv
  return 1 2>/dev/null || exit 1
fi

# _echoposed_prepend VAR DIR: DIR first in the ':'-list VAR, unless it is in it already.
_echoposed_prepend() {
  local current
  eval "current=\"\${$1:-}\""
  case ":$current:" in
    *":$2:"*) ;;
    *) eval "export $1=\"\$2\${current:+:\$current}\"" ;;
  esac
}

_echoposed_prepend AMENT_PREFIX_PATH "$_echoposed_venv"
_echoposed_prepend PATH "$_echoposed_venv/bin"
for _echoposed_lib in $(find "$_echoposed_venv"/lib/python3*/site-packages -maxdepth 1 -type d -name 'ros_*.libs' \
                          2>/dev/null | sort -r) "$_echoposed_venv/lib"; do
  _echoposed_prepend LD_LIBRARY_PATH "$_echoposed_lib"
done
export ROS_VERSION="${ROS_VERSION:-2}" ROS_PYTHON_VERSION="${ROS_PYTHON_VERSION:-3}" ROS_DISTRO="${ROS_DISTRO:-kilted}"
unset -f _echoposed_prepend
hash -r 2>/dev/null || true
unset _echoposed_venv _echoposed_lib
