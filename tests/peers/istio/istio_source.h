// Istio's own source (the istio.io/istio Go module, fetched by scripts/peers.sh istio into the
// peers cache): tests read its testdata, never copy it into the clone.
#pragma once

#include <filesystem>

namespace ambient::peers {

// The module's root: $AMBIENT_ISTIO_SRC, else the peers cache path CMake derived from
// scripts/peers.sh's ISTIO_VERSION. Throws std::runtime_error naming what to run when neither
// holds the source.
std::filesystem::path istio_source_dir();

}  // namespace ambient::peers
