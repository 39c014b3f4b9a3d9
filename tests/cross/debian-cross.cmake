# Shared body of the tests/cross/<triplet>.cmake toolchain files; they set
# LUACME_TRIPLET. CMake reads a toolchain file more than once (try_compile
# projects too), so everything here derives from variables it forwards.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES LUACME_TRIPLET LUACME_SYSROOT)

string(REGEX MATCH "^[^-]+" _cpu "${LUACME_TRIPLET}")
if(_cpu STREQUAL "arm")
  set(CMAKE_SYSTEM_PROCESSOR arm)
else()
  set(CMAKE_SYSTEM_PROCESSOR ${_cpu})
endif()
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_C_COMPILER ${LUACME_TRIPLET}-gcc)
set(CMAKE_AR ${LUACME_TRIPLET}-ar CACHE FILEPATH "")
set(CMAKE_RANLIB ${LUACME_TRIPLET}-ranlib CACHE FILEPATH "")
set(CMAKE_STRIP ${LUACME_TRIPLET}-strip CACHE FILEPATH "")
set(CMAKE_LIBRARY_ARCHITECTURE ${LUACME_TRIPLET})

if(NOT LUACME_SYSROOT AND DEFINED ENV{LUACME_SYSROOT})
  set(LUACME_SYSROOT $ENV{LUACME_SYSROOT})
endif()
if(LUACME_SYSROOT)
  set(CMAKE_SYSROOT ${LUACME_SYSROOT})
  set(CMAKE_FIND_ROOT_PATH ${LUACME_SYSROOT})
  # libcurl.so names libnghttp2, libldap...; the linker must find those
  # in the sysroot, not on the host.
  set(CMAKE_EXE_LINKER_FLAGS_INIT
    "-Wl,-rpath-link,${LUACME_SYSROOT}/usr/lib/${LUACME_TRIPLET}:${LUACME_SYSROOT}/lib/${LUACME_TRIPLET}")
  set(ENV{PKG_CONFIG_SYSROOT_DIR} ${LUACME_SYSROOT})
  set(ENV{PKG_CONFIG_LIBDIR}
    "${LUACME_SYSROOT}/usr/lib/${LUACME_TRIPLET}/pkgconfig:${LUACME_SYSROOT}/usr/share/pkgconfig")
else()
  # Multiarch: the target's libraries sit beside the host's.
  set(ENV{PKG_CONFIG_LIBDIR}
    "/usr/lib/${LUACME_TRIPLET}/pkgconfig:/usr/share/pkgconfig")
endif()

# Programs (a build-time generator) are the host's; libraries and headers
# the target's only.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# add_test(COMMAND luacme ...) then runs the target's binary under
# qemu-user, no binfmt needed; tests/cross/CMakeLists.txt passes it on to
# the scenarios that spawn luacme themselves.
find_program(LUACME_QEMU qemu-${_cpu} NO_CMAKE_FIND_ROOT_PATH)
if(LUACME_QEMU AND LUACME_SYSROOT)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${LUACME_QEMU} -L ${LUACME_SYSROOT})
elseif(LUACME_QEMU)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${LUACME_QEMU})
endif()
