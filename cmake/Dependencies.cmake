# Debian 12 packages only (architecture.md, "Dependencies"); scripts/deps.sh installs them.
find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(CLI11 REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(Protobuf REQUIRED)
pkg_check_modules(NFTABLES REQUIRED IMPORTED_TARGET libnftables)
pkg_check_modules(LIBNL REQUIRED IMPORTED_TARGET libnl-3.0 libnl-route-3.0)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
# libcurl: only its headers at build time; the plugin loads libcurl.so.4 when it first needs the
# API (docs/decisions/001-plugin-startup-cost.md).
pkg_check_modules(CURL REQUIRED libcurl)
if(AMBIENT_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(AMBIENT_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()

# Logging for short-lived binaries: spdlog and fmt compiled into the binary, so the plugin's
# exec does not pay for loading libspdlog.so and libfmt.so.
add_library(ambient_log_header_only INTERFACE)
target_compile_definitions(ambient_log_header_only INTERFACE SPDLOG_FMT_EXTERNAL FMT_HEADER_ONLY)
target_link_libraries(ambient_log_header_only INTERFACE Threads::Threads)

# yaml-cpp statically, for the same reason.
find_library(YAML_CPP_STATIC NAMES libyaml-cpp.a REQUIRED)
add_library(ambient_yaml_static INTERFACE)
target_link_libraries(ambient_yaml_static INTERFACE ${YAML_CPP_STATIC})
get_target_property(_yaml_inc yaml-cpp INTERFACE_INCLUDE_DIRECTORIES)
if(_yaml_inc)
  target_include_directories(ambient_yaml_static INTERFACE ${_yaml_inc})
endif()
