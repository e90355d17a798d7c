# Locates LibTorch inside the project's virtual environment (the pinned
# `torch` wheel, found through torch's cmake prefix path) and defines
# dpfleet::torch.
#
# dpfleet links libtorch_cpu + libc10 directly instead of calling
# find_package(Torch): the wheel's Caffe2Config insists on a CUDA toolkit and
# on every CUDA library libtorch_cuda needs (cuDNN, cuSPARSELt, NVSHMEM,
# cuFile), because the wheel was built with CUDA, and the build must work on
# machines that have none of them. On a GPU machine the worker loads
# libtorch_cuda at run time (worker/train/device.h), so one binary serves
# both.
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
# The wheel's include/ also carries its own (older) protobuf headers under
# google/, which would shadow the system protobuf that gRPC is built with.
# Expose every entry except google/ through a folder of symlinks.
set(_torch_inc "${CMAKE_BINARY_DIR}/torch_include")
file(MAKE_DIRECTORY "${_torch_inc}")
file(GLOB _torch_inc_entries RELATIVE "${DPFLEET_TORCH_ROOT}/include" "${DPFLEET_TORCH_ROOT}/include/*")
foreach(_e ${_torch_inc_entries})
  if(NOT _e STREQUAL "google" AND NOT EXISTS "${_torch_inc}/${_e}")
    file(CREATE_LINK "${DPFLEET_TORCH_ROOT}/include/${_e}" "${_torch_inc}/${_e}" SYMBOLIC)
  endif()
endforeach()
target_include_directories(dpfleet_torch SYSTEM INTERFACE
  "${_torch_inc}"
  "${DPFLEET_TORCH_ROOT}/include/torch/csrc/api/include")
target_link_libraries(dpfleet_torch INTERFACE
  "${DPFLEET_TORCH_ROOT}/lib/libtorch_cpu.so"
  "${DPFLEET_TORCH_ROOT}/lib/libc10.so")
# The wheel is built with the C++11 ABI and with c10d's Gloo backend.
target_compile_definitions(dpfleet_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=1 USE_C10D_GLOO)
set(DPFLEET_TORCH_LIB_DIR "${DPFLEET_TORCH_ROOT}/lib")
# Binaries in the build tree find the wheel's libraries without
# LD_LIBRARY_PATH; installed ones find the copies installed beside them
# (cmake/Install.cmake).
set(CMAKE_BUILD_RPATH ${CMAKE_BUILD_RPATH} ${DPFLEET_TORCH_LIB_DIRS})
