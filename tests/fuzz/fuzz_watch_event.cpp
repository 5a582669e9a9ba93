// What the informer does with any watch event or list item the API could send: classify it, key
// it, read its resourceVersion-bearing metadata — never a crash, whatever the types.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "agent/informer.h"
#include "config/errors.h"
#include "config/kube_objects.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto doc = nlohmann::json::parse(
      std::string_view(reinterpret_cast<const char*>(data), size), nullptr, false);
  if (doc.is_discarded()) return 0;
  const auto e = ambient::agent::classify_watch_event(doc);
  (void)ambient::agent::Informer::key_of(doc);
  if (e.action == ambient::agent::WatchEvent::Action::kApply && doc.contains("object")) {
    (void)ambient::agent::Informer::key_of(doc["object"]);
    try {
      (void)ambient::config::parse_pod(doc["object"]);
    } catch (const ambient::config::ConfigError&) {
    }
  }
  return 0;
}
