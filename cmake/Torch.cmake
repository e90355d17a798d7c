# Locates LibTorch inside the project's virtual environment (the pinned
# `torch` wheel) and defines dpfleet::torch.
#
# CPU builds link libtorch_cpu + libc10 directly instead of calling
# find_package(Torch): the wheel's Caffe2Config insists on a CUDA toolkit
# because the wheel was built with CUDA, and the CPU build must also work on
# machines without one. With DPFLEET_WITH_CUDA the regular
# find_package(Torch) path is used and libtorch_cuda is linked too.
if(NOT Python3_EXECUTABLE)
  set(Python3_EXECUTABLE "${PROJECT_SOURCE_DIR}/.venv/bin/python")
endif()
execute_process(
  COMMAND "${Python3_EXECUTABLE}" -c
    "import importlib.util, os; s = importlib.util.find_spec('torch'); print(os.path.join(s.submodule_search_locations[0], 'share', 'cmake'))"
  OUTPUT_VARIABLE DPFLEET_TORCH_CMAKE_PREFIX
  OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _torch_rc)
if(NOT _torch_rc EQUAL 0 OR NOT EXISTS "${DPFLEET_TORCH_CMAKE_PREFIX}/Torch/TorchConfig.cmake")
  message(FATAL_ERROR "LibTorch not found through ${Python3_EXECUTABLE}; run ./dpfleet setup")
endif()
get_filename_component(DPFLEET_TORCH_ROOT "${DPFLEET_TORCH_CMAKE_PREFIX}/../.." ABSOLUTE)
get_filename_component(_site "${DPFLEET_TORCH_ROOT}/.." ABSOLUTE)
set(DPFLEET_TORCH_LIB_DIRS "${DPFLEET_TORCH_ROOT}/lib")
if(EXISTS "${_site}/nvidia/cu13/lib")
  list(APPEND DPFLEET_TORCH_LIB_DIRS "${_site}/nvidia/cu13/lib")
endif()
message(STATUS "LibTorch: ${DPFLEET_TORCH_ROOT}")

add_library(dpfleet_torch INTERFACE)
add_library(dpfleet::torch ALIAS dpfleet_torch)
if(DPFLEET_WITH_CUDA)
  list(APPEND CMAKE_PREFIX_PATH "${DPFLEET_TORCH_CMAKE_PREFIX}")
  find_package(Torch REQUIRED)
  target_link_libraries(dpfleet_torch INTERFACE ${TORCH_LIBRARIES})
  target_include_directories(dpfleet_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
else()
  target_include_directories(dpfleet_torch SYSTEM INTERFACE
    "${DPFLEET_TORCH_ROOT}/include"
    "${DPFLEET_TORCH_ROOT}/include/torch/csrc/api/include")
  target_link_libraries(dpfleet_torch INTERFACE
    "${DPFLEET_TORCH_ROOT}/lib/libtorch_cpu.so"
    "${DPFLEET_TORCH_ROOT}/lib/libc10.so")
  target_compile_definitions(dpfleet_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=1 USE_C10D_GLOO)
endif()
# Binaries find the wheel's libraries without LD_LIBRARY_PATH.
set(CMAKE_BUILD_RPATH ${CMAKE_BUILD_RPATH} ${DPFLEET_TORCH_LIB_DIRS})
set(CMAKE_INSTALL_RPATH ${CMAKE_INSTALL_RPATH} ${DPFLEET_TORCH_LIB_DIRS})
