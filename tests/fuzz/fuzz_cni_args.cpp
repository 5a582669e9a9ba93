#include <cstddef>
#include <cstdint>
#include <string_view>

#include "plugin/cni_args.h"
#include "plugin/cni_error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)ambient::plugin::parse_cni_args(
        std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const ambient::plugin::CniError& e) {
    if (e.code() != 4) __builtin_trap();
  }
  return 0;
}
