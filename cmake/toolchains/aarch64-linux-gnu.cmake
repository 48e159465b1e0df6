# Cross-compiling segpipe for ARM64 Linux on a Debian x86-64 machine with Debian's cross toolchain
# (crossbuild-essential-arm64) and the arm64 libraries installed through multiarch (tools/arm64/cross_test.sh).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# Multiarch: the arm64 libraries and their CMake packages live under /usr/lib/aarch64-linux-gnu.
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu /usr)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# pkg-config of the target's libraries (pcre2, utf8proc)
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
# Tests run through user-mode emulation (binfmt_misc does it for the processes they start).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static)
# Emulation runs the tests several times slower than a native ARM64 core would.
set(SEGPIPE_TEST_TIMEOUT_SCALE 8 CACHE STRING "Multiplier of every test's time limit (emulated runs)")
# yaml-cpp's -dev package cannot be installed for two architectures at once (it is not Multi-Arch:
# same); the arm64 runtime library and the shared headers are enough, described by this shim.
set(yaml-cpp_DIR "${CMAKE_CURRENT_LIST_DIR}/../arm64-shims/yaml-cpp" CACHE PATH "yaml-cpp for ARM64 (shim)")
