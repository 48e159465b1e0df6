# yaml-cpp for the ARM64 cross build (cmake/toolchains/aarch64-linux-gnu.cmake): Debian's arm64 runtime
# library (libyaml-cpp0.7:arm64) and the headers of the native -dev package (the same for every architecture).
find_library(SEGPIPE_YAML_CPP_ARM64 NAMES libyaml-cpp.so.0.7 PATHS /usr/lib/aarch64-linux-gnu NO_DEFAULT_PATH REQUIRED)
if(NOT TARGET yaml-cpp)
  add_library(yaml-cpp SHARED IMPORTED)
  set_target_properties(yaml-cpp PROPERTIES IMPORTED_LOCATION "${SEGPIPE_YAML_CPP_ARM64}"
                        INTERFACE_INCLUDE_DIRECTORIES "/usr/include")
endif()
set(yaml-cpp_FOUND TRUE)
set(YAML_CPP_LIBRARIES yaml-cpp)
