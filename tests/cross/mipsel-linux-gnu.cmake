# Cross-builds luacme for mipsel-linux-gnu with Debian's cross compiler
# (gcc-mipsel-linux-gnu). Libraries come from either
#  - a sysroot made by tests/cross/sysroot.sh mipsel DIR: pass
#    -DLUACME_SYSROOT=DIR (nothing installed on the host), or
#  - multiarch packages (libssl-dev:mipsel ...) when LUACME_SYSROOT is unset.
# Run the result with: qemu-mipsel -L DIR ./luacme   (or -L / for multiarch)
set(LUACME_TRIPLET mipsel-linux-gnu)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
