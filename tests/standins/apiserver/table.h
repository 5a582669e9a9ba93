// Server-side printing: the meta.k8s.io/v1 Table kubectl asks for (Accept: …;as=Table;…), so
// `kubectl get` shows the real columns (STATUS, READY, RESTARTS, …) instead of NAME/AGE only.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ambient::testing {

struct TableRequest {
  enum class Include { kNone, kMetadata, kObject };
  bool wanted = false;
  Include include = Include::kMetadata;
};

// From the Accept header and the includeObject query parameter.
TableRequest table_request(const std::string& accept, const std::string& include_object);

// A Table of `objects` (all of `kind`, Namespace or Pod) with full column definitions.
nlohmann::json make_table(const std::string& kind,
                          const std::vector<const nlohmann::json*>& objects,
                          const TableRequest& request, const nlohmann::json& list_metadata);

// Kubernetes' short human age ("45s", "3m12s", "5h", "12d"), as in `kubectl get`.
std::string human_age(long long seconds);

}  // namespace ambient::testing
