# flotilla_library(NAME SRCS ... DEPS ... [PRIVATE_DEPS ...])
# One static library per folder; public headers are included as "folder/file.h" from the repo root.
set(FLOTILLA_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers)

function(flotilla_library name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SRCS})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${FLOTILLA_WARNINGS}>)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
endfunction()

# flotilla_test(NAME SRCS ... DEPS ... [LABELS unit|integration|gpu] [TIMEOUT s])
# Tests are discovered at test time so that building does not run every test binary.
include(GoogleTest)
function(flotilla_test name)
  # SERIAL: run alone (tests whose subject is timing under load, e.g. autoscaling a fleet, would
  # otherwise measure whatever else ctest -j runs beside them).
  cmake_parse_arguments(ARG "SERIAL" "TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_compile_options(${name} PRIVATE ${FLOTILLA_WARNINGS})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest_main GTest::gmock)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set(serial FALSE)
  if(ARG_SERIAL)
    set(serial TRUE)
  endif()
  gtest_discover_tests(${name}
    DISCOVERY_MODE PRE_TEST
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT} RUN_SERIAL ${serial}
               ENVIRONMENT "FLOTILLA_BIN_DIR=${CMAKE_BINARY_DIR}/bin;FLOTILLA_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endfunction()
