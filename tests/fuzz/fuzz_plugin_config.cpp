// The conflist entry parser: any bytes must give a config or a ConfigError, nothing else.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/errors.h"
#include "config/plugin_config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto c = ambient::config::parse_plugin_config(
        std::string_view(reinterpret_cast<const char*>(data), size));
    (void)ambient::config::find_runtime_config(c.runtime_config, "portMappings");
  } catch (const ambient::config::ConfigError&) {
  }
  return 0;
}
