# Read by cpack for each generator (CPACK_PROJECT_CONFIG_FILE).
#
# A .deb's files belong under /usr and /etc, and the unit starts
# /usr/bin/parksyncd: a package configured with another prefix (cmake's
# default is /usr/local) would install a unit that cannot start and a
# conffile under /usr/local/etc. Refuse it, saying how to configure.
if(CPACK_GENERATOR STREQUAL "DEB" AND NOT CPACK_PACKAGING_INSTALL_PREFIX STREQUAL "/usr")
  message(FATAL_ERROR
    "parksync: a .deb needs the prefix /usr (the unit runs /usr/bin/parksyncd), "
    "but this build was configured with ${CPACK_PACKAGING_INSTALL_PREFIX}: "
    "cmake -S . -B build-deb -DCMAKE_INSTALL_PREFIX=/usr -DPARKSYNC_TESTS=OFF")
endif()
