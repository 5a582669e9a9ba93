// Pod/Namespace parsing and the decision over whatever the API (or a file) hands us.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "config/decision.h"
#include "config/errors.h"
#include "config/kube_objects.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto doc = nlohmann::json::parse(
      std::string_view(reinterpret_cast<const char*>(data), size), nullptr, false);
  if (doc.is_discarded()) return 0;
  try {
    const auto pod = ambient::config::parse_pod(doc);
    ambient::config::NamespaceInfo ns;
    ns.name = pod.namespace_;
    ns.labels = pod.labels;  // exercise namespace selectors with the same labels
    (void)ambient::config::decide(ambient::config::EnrolmentPolicy{}, pod, ns);
  } catch (const ambient::config::ConfigError&) {
  }
  try {
    (void)ambient::config::parse_namespace(doc);
  } catch (const ambient::config::ConfigError&) {
  }
  return 0;
}
