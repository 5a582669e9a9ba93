// Base64 (RFC 4648, standard alphabet, padded) for kubeconfig *-data fields.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace ambient::kube {

// Decodes padded standard base64; ASCII whitespace is skipped (YAML folds long values).
// nullopt when the text is not valid base64.
std::optional<std::string> base64_decode(std::string_view text);

std::string base64_encode(std::string_view bytes);

}  // namespace ambient::kube
