# `cmake --install` and the Debian packages (CPack).
#
# Three components, one package each: server (dpfleet-server), worker
# (dpfleet-worker with the LibTorch, OpenMP and CUDA user-space libraries it
# links, which no Debian package provides) and dpctl. The system libraries
# (gRPC, Protobuf, Abseil, yaml-cpp, SQLite, ...) come from Debian and become
# package dependencies. The bundled libraries go to lib/dpfleet/ and the
# binaries carry RPATH $ORIGIN/../lib/dpfleet, so an installed prefix still
# works after it is moved. Each package has its own doc directory
# (share/doc/<package>), so the three install side by side.
#
# A GPU worker additionally needs libtorch_cuda and torch's CUDA libraries
# (cuBLAS, cuDNN, ...; several GB) in the same lib directory, or the worker
# running where the full torch wheel is installed: docs/OPERATIONS.md.

set(_dpfleet_docs README.md docs/DESIGN.md docs/ACCOUNTANT.md docs/BENCHMARKS.md)
foreach(_doc PRIVACY.md SECURITY.md OPERATIONS.md)
  if(EXISTS ${PROJECT_SOURCE_DIR}/docs/${_doc})
    list(APPEND _dpfleet_docs docs/${_doc})
  endif()
endforeach()

install(TARGETS dpfleet-server RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT server)
install(TARGETS dpctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT dpctl)
install(TARGETS dpfleet-worker RUNTIME_DEPENDENCY_SET dpfleet_worker_libs
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT worker)
# The LibTorch half of `dpctl export` (docs/EXPORT.md) ships with the worker's
# LibTorch; dpctl finds it beside itself.
install(TARGETS dpfleet-export RUNTIME_DEPENDENCY_SET dpfleet_worker_libs
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT worker)
# Everything the worker links from outside the system library directories:
# libtorch_cpu, libc10, libgomp, libcudart, libcupti, libnccl.
install(RUNTIME_DEPENDENCY_SET dpfleet_worker_libs
        DESTINATION ${DPFLEET_INSTALL_PRIVATE_LIBDIR} COMPONENT worker
        PRE_EXCLUDE_REGEXES "^ld-linux" "^linux-vdso"
        POST_EXCLUDE_REGEXES "^/lib/" "^/lib64/" "^/usr/lib/" "^/usr/lib64/"
        DIRECTORIES ${DPFLEET_TORCH_LIB_DIRS})
foreach(_component server worker dpctl)
  install(FILES ${_dpfleet_docs} DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/dpfleet-${_component}
          COMPONENT ${_component})
endforeach()
install(DIRECTORY deploy/examples/ DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/dpfleet-dpctl/examples
        COMPONENT dpctl)
if(EXISTS ${PROJECT_SOURCE_DIR}/deploy/systemd)
  install(FILES deploy/systemd/dpfleet-server.service DESTINATION lib/systemd/system COMPONENT server)
  install(FILES deploy/systemd/dpfleet-server.env DESTINATION ${CMAKE_INSTALL_SYSCONFDIR}/dpfleet COMPONENT server)
  install(FILES deploy/systemd/dpfleet-worker@.service DESTINATION lib/systemd/system COMPONENT worker)
  install(FILES deploy/systemd/dpfleet-worker.env DESTINATION ${CMAKE_INSTALL_SYSCONFDIR}/dpfleet COMPONENT worker)
endif()

# Debian packages: `cpack -G DEB` in the build directory (or ./dpfleet package)
# writes dpfleet-server_*.deb, dpfleet-worker_*.deb and dpfleet-dpctl_*.deb.
set(CPACK_PACKAGE_NAME dpfleet)
set(CPACK_PACKAGE_VENDOR "dpfleet")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Differentially-private training on census microdata across a fleet")
set(CPACK_PACKAGE_CONTACT "dpfleet maintainers <dpfleet@localhost>")
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL server worker dpctl)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
# dpkg-shlibdeps turns the system libraries the binaries link into package
# dependencies; the worker's bundled libraries are found in the package.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${CMAKE_INSTALL_PREFIX}/${DPFLEET_INSTALL_PRIVATE_LIBDIR})
set(CPACK_STRIP_FILES ON)
# The worker package holds ~0.5 GB of LibTorch: gzip keeps `cpack` quick
# (xz takes minutes on two cores for ~20% less).
set(CPACK_DEBIAN_COMPRESSION_TYPE gzip)
set(CPACK_DEBIAN_SERVER_PACKAGE_NAME dpfleet-server)
set(CPACK_DEBIAN_WORKER_PACKAGE_NAME dpfleet-worker)
set(CPACK_DEBIAN_DPCTL_PACKAGE_NAME dpfleet-dpctl)
set(CPACK_COMPONENT_SERVER_DESCRIPTION "dpfleet coordinator: job specs over gRPC, durable privacy ledger, HTTP status")
set(CPACK_COMPONENT_WORKER_DESCRIPTION "dpfleet worker daemon: DP-SGD on LibTorch, Gloo/NCCL all-reduce")
set(CPACK_COMPONENT_DPCTL_DESCRIPTION "dpctl: submit, watch and inspect dpfleet jobs; offline privacy calculator")
include(CPack)
