#include "kube/curl_api.h"

#include <dlfcn.h>

#include <atomic>
#include <mutex>
#include <optional>

#include "kube/client.h"

namespace ambient::kube::detail {
namespace {

std::string& library_name() {
  static std::string name = "libcurl.so.4";
  return name;
}

std::atomic<bool> pem_blobs_disabled{false};

struct LoadResult {
  CurlApi api;
  std::optional<std::string> error;
};

template <typename Fn>
bool resolve(void* handle, const char* symbol, Fn& slot, std::string& missing) {
  void* address = dlsym(handle, symbol);
  if (address == nullptr) {
    if (!missing.empty()) missing += ", ";
    missing += symbol;
    return false;
  }
  slot = reinterpret_cast<Fn>(address);
  return true;
}

LoadResult load() {
  LoadResult result;
  CurlApi& api = result.api;
  api.library = library_name();
  // RTLD_LOCAL: libcurl's symbols stay out of the global namespace of the process.
  void* handle = dlopen(api.library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    result.error = "cannot load " + api.library + ": " + (why ? why : "unknown dlopen error");
    return result;
  }
  std::string missing;
  resolve(handle, "curl_global_init", api.global_init, missing);
  resolve(handle, "curl_easy_init", api.easy_init, missing);
  resolve(handle, "curl_easy_setopt", api.easy_setopt, missing);
  resolve(handle, "curl_easy_perform", api.easy_perform, missing);
  resolve(handle, "curl_easy_getinfo", api.easy_getinfo, missing);
  resolve(handle, "curl_easy_reset", api.easy_reset, missing);
  resolve(handle, "curl_easy_cleanup", api.easy_cleanup, missing);
  resolve(handle, "curl_easy_strerror", api.easy_strerror, missing);
  resolve(handle, "curl_slist_append", api.slist_append, missing);
  resolve(handle, "curl_slist_free_all", api.slist_free_all, missing);
  resolve(handle, "curl_version_info", api.version_info, missing);
  if (!missing.empty()) {
    // The handle is deliberately kept: unloading a half-used library buys nothing.
    result.error = api.library + " lacks " + missing;
    return result;
  }
  const curl_version_info_data* info = api.version_info(CURLVERSION_NOW);
  api.version_num = info != nullptr ? info->version_num : 0;
  const CURLcode rc = api.global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK) {
    result.error = api.library + ": curl_global_init failed: " + api.easy_strerror(rc);
  }
  return result;
}

}  // namespace

const CurlApi& curl_api() {
  static std::once_flag once;
  static LoadResult loaded;
  std::call_once(once, [] { loaded = load(); });
  if (loaded.error) {
    throw ApiError(ApiError::Kind::kClientUnavailable, 0,
                   "Kubernetes API client unavailable: " + *loaded.error);
  }
  return loaded.api;
}

void set_libcurl_name_for_testing(std::string name) {
  library_name() = std::move(name);
}
void set_pem_blobs_disabled_for_testing(bool disabled) {
  pem_blobs_disabled = disabled;
}
bool pem_blobs_disabled_for_testing() {
  return pem_blobs_disabled;
}

}  // namespace ambient::kube::detail
