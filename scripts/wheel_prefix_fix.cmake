# Contained fix for building ROS 2 interface packages against the ROS 2 wheels from PyPI.
#
# Some CMake export files shipped in those wheels name the include directories of the machine
# that built them (/opt/python/cp311-cp311/include/python3.11 and that machine's numpy). CMake
# refuses imported targets whose include directories do not exist. This file is injected with
# -DCMAKE_PROJECT_INCLUDE=... by scripts/setup.sh only (never on a real ROS 2 install): after the
# project's CMakeLists.txt has been read, it rewrites those paths on the imported targets to this
# interpreter's own Python and numpy include directories. Nothing on disk is modified.

find_package(Python3 REQUIRED COMPONENTS Interpreter Development)
execute_process(
  COMMAND "${Python3_EXECUTABLE}" -c "import numpy; print(numpy.get_include())"
  OUTPUT_VARIABLE _echoposed_numpy_include
  OUTPUT_STRIP_TRAILING_WHITESPACE
  COMMAND_ERROR_IS_FATAL ANY)

set(_echoposed_foreign_prefix "/opt/python/cp311-cp311")

function(_echoposed_fix_wheel_include_dirs)
  get_directory_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" IMPORTED_TARGETS)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs "${_target}" INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs OR NOT _dirs MATCHES "${_echoposed_foreign_prefix}")
      continue()
    endif()
    set(_fixed "")
    foreach(_dir IN LISTS _dirs)
      if(_dir MATCHES "^${_echoposed_foreign_prefix}/include/python")
        list(APPEND _fixed ${Python3_INCLUDE_DIRS})
      elseif(_dir MATCHES "^${_echoposed_foreign_prefix}/.*numpy/_core/include$")
        list(APPEND _fixed "${_echoposed_numpy_include}")
      elseif(_dir MATCHES "^${_echoposed_foreign_prefix}")
        message(FATAL_ERROR "wheel_prefix_fix.cmake: imported target ${_target} names "
                            "'${_dir}', which this fix does not know how to map")
      else()
        list(APPEND _fixed "${_dir}")
      endif()
    endforeach()
    list(REMOVE_DUPLICATES _fixed)
    set_target_properties("${_target}" PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_fixed}")
    message(STATUS "wheel_prefix_fix: mapped include directories of ${_target}")
  endforeach()
endfunction()

cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _echoposed_fix_wheel_include_dirs)
