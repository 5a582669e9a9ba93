#include "tests/peers/istio/istio_source.h"

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace ambient::peers {

std::filesystem::path istio_source_dir() {
  namespace fs = std::filesystem;
  auto holds_source = [](const fs::path& p) { return fs::is_directory(p / "cni" / "pkg"); };
  if (const char* env = std::getenv("AMBIENT_ISTIO_SRC"); env && *env) {
    if (holds_source(env)) return env;
    throw std::runtime_error(std::string("AMBIENT_ISTIO_SRC=") + env +
                             " does not hold istio.io/istio (no cni/pkg)");
  }
  const fs::path cached = AMBIENT_ISTIO_CACHED_SRC;
  if (holds_source(cached)) return cached;
  throw std::runtime_error("Istio's source is not fetched (looked in " + cached.string() +
                           "): run scripts/peers.sh istio");
}

}  // namespace ambient::peers
