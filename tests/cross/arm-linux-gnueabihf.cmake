# Cross-builds luacme for arm-linux-gnueabihf with Debian's cross compiler
# (gcc-arm-linux-gnueabihf). Libraries come from either
#  - a sysroot made by tests/cross/sysroot.sh armhf DIR: pass
#    -DLUACME_SYSROOT=DIR (nothing installed on the host), or
#  - multiarch packages (libssl-dev:armhf ...) when LUACME_SYSROOT is unset.
# Run the result with: qemu-arm -L DIR ./luacme   (or -L / for multiarch)
set(LUACME_TRIPLET arm-linux-gnueabihf)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
