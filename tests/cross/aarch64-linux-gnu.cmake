# Cross-builds luacme for aarch64-linux-gnu with Debian's cross compiler
# (gcc-aarch64-linux-gnu). Libraries come from either
#  - a sysroot made by tests/cross/sysroot.sh arm64 DIR: pass
#    -DLUACME_SYSROOT=DIR (nothing installed on the host), or
#  - multiarch packages (libssl-dev:arm64 ...) when LUACME_SYSROOT is unset.
# Run the result with: qemu-aarch64 -L DIR ./luacme   (or -L / for multiarch)
set(LUACME_TRIPLET aarch64-linux-gnu)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
