// libcurl resolved at run time: a function table filled once from dlopen("libcurl.so.4").
// Only the curl headers are used at build time (types and constants); the plugin binary has no
// DT_NEEDED entry for libcurl (docs/decisions/003-kube-client.md).
#pragma once

#include <curl/curl.h>

#include <string>

namespace ambient::kube::detail {

struct CurlApi {
  CURLcode (*global_init)(long flags) = nullptr;
  CURL* (*easy_init)() = nullptr;
  CURLcode (*easy_setopt)(CURL*, CURLoption, ...) = nullptr;
  CURLcode (*easy_perform)(CURL*) = nullptr;
  CURLcode (*easy_getinfo)(CURL*, CURLINFO, ...) = nullptr;
  void (*easy_reset)(CURL*) = nullptr;
  void (*easy_cleanup)(CURL*) = nullptr;
  const char* (*easy_strerror)(CURLcode) = nullptr;
  curl_slist* (*slist_append)(curl_slist*, const char*) = nullptr;
  void (*slist_free_all)(curl_slist*) = nullptr;
  curl_version_info_data* (*version_info)(CURLversion) = nullptr;

  std::string library;       // the name passed to dlopen
  unsigned int version_num;  // 0xXXYYZZ of the loaded library, not of the headers
};

// Loads the library and resolves every function once (std::call_once: safe from any thread).
// Throws ApiError(kClientUnavailable) naming the library and the missing piece; a failed load
// is remembered and reported again on every call.
const CurlApi& curl_api();

// Tests only, before the first curl_api() call in the process: load another soname (to prove
// the failure path) or pretend the library lacks the *_BLOB options (to prove the fallback to
// private temporary files).
void set_libcurl_name_for_testing(std::string name);
void set_pem_blobs_disabled_for_testing(bool disabled);
bool pem_blobs_disabled_for_testing();

}  // namespace ambient::kube::detail
