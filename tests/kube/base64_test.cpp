#include "kube/base64.h"

#include <gtest/gtest.h>

namespace ambient::kube {
namespace {

TEST(Base64, RoundTripsEveryLengthModuloThree) {
  std::string bytes;
  for (int i = 0; i < 64; ++i) {
    bytes.push_back(static_cast<char>(i * 37 + 11));
    const std::string encoded = base64_encode(bytes);
    EXPECT_EQ(encoded.size() % 4, 0u);
    auto decoded = base64_decode(encoded);
    ASSERT_TRUE(decoded.has_value()) << encoded;
    EXPECT_EQ(*decoded, bytes);
  }
}

TEST(Base64, KnownVectors) {
  // RFC 4648 section 10.
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
  EXPECT_EQ(base64_decode("Zm9vYg==").value(), "foob");
  EXPECT_EQ(base64_decode("").value(), "");
}

TEST(Base64, SkipsWhitespaceFromFoldedYaml) {
  EXPECT_EQ(base64_decode("Zm9v\nYmFy\r\n ").value(), "foobar");
}

TEST(Base64, RejectsMalformedText) {
  EXPECT_FALSE(base64_decode("Zm9vYmF"));   // not a multiple of 4
  EXPECT_FALSE(base64_decode("Zm9v!mFy"));  // outside the alphabet
  EXPECT_FALSE(base64_decode("Zm=vYmFy"));  // padding in the middle
  EXPECT_FALSE(base64_decode("Zg==Zm9v"));  // padding before the last group
  EXPECT_FALSE(base64_decode("Z==="));      // too much padding
  EXPECT_FALSE(base64_decode("Zm9v_mFy"));  // URL-safe alphabet is not kubeconfig's
}

}  // namespace
}  // namespace ambient::kube
