// prevResult conversion: the first byte picks the target version, the rest is the result.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "plugin/cni_error.h"
#include "plugin/cni_version.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  using ambient::plugin::kSupportedVersions;
  const auto to = kSupportedVersions[data[0] % kSupportedVersions.size()];
  const auto doc = nlohmann::json::parse(
      std::string_view(reinterpret_cast<const char*>(data + 1), size - 1), nullptr, false);
  if (doc.is_discarded()) return 0;
  try {
    const auto out = ambient::plugin::convert_result(doc, "1.0.0", to);
    if (out["cniVersion"] != to) __builtin_trap();
  } catch (const ambient::plugin::CniError&) {
  }
  return 0;
}
