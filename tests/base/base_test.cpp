// The base library: durable atomic writes (exact mode, no half files, no symlink followed) and
// the node's SOCK_SEQPACKET endpoints (0600 whatever the umask, messages of any size).
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "base/file.h"
#include "base/seqpacket.h"
#include "tests/support/scratch_dir.h"

namespace ambient::base {
namespace {

namespace fs = std::filesystem;

class BaseTest : public ::testing::Test {
 protected:
  static mode_t mode_of(const fs::path& p) {
    struct stat st {};
    ::lstat(p.c_str(), &st);
    return st.st_mode & 07777;
  }
  ambient::testing::ScratchDir scratch_{"base"};
  const fs::path& dir_ = scratch_.path();
};

TEST_F(BaseTest, AtomicWriteHasExactlyTheModeAndLeavesNoTemp) {
  const mode_t old = ::umask(0077);
  write_file_atomic(dir_ / "a.conf", "one", 0644);
  ::umask(old);
  EXPECT_EQ(read_file(dir_ / "a.conf"), "one");
  EXPECT_EQ(mode_of(dir_ / "a.conf"), 0644u);
  write_file_atomic(dir_ / "a.conf", "two", 0600);
  EXPECT_EQ(read_file(dir_ / "a.conf"), "two");
  EXPECT_EQ(mode_of(dir_ / "a.conf"), 0600u);
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++files;
  EXPECT_EQ(files, 1u);
}

TEST_F(BaseTest, AtomicWriteReplacesASymlinkInsteadOfWritingThroughIt) {
  std::ofstream(dir_ / "target") << "keep me";
  fs::create_symlink(dir_ / "target", dir_ / "link");
  write_file_atomic(dir_ / "link", "new", 0600);
  EXPECT_EQ(read_file(dir_ / "target"), "keep me");
  EXPECT_FALSE(fs::is_symlink(dir_ / "link"));
  EXPECT_EQ(read_file(dir_ / "link"), "new");
}

TEST_F(BaseTest, ReadFileSaysMissingAndCanRefuseSymlinks) {
  EXPECT_FALSE(read_file(dir_ / "none").has_value());
  std::ofstream(dir_ / "t") << "x";
  fs::create_symlink(dir_ / "t", dir_ / "l");
  EXPECT_EQ(read_file(dir_ / "l"), "x");
  EXPECT_THROW(read_file(dir_ / "l", /*no_follow=*/true), FileError);
  EXPECT_THROW(write_file_atomic(dir_ / "no-such-dir" / "f", "x"), FileError);
}

// A plugin binary is tens of MiB: copied and compared in chunks, bytes and mode exact.
TEST_F(BaseTest, CopyFileAtomicCopiesEveryByteWithExactlyTheMode) {
  std::string big(300'000, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7919) % 251);
  write_file_atomic(dir_ / "src", big, 0644);
  const mode_t old = ::umask(0077);
  copy_file_atomic(dir_ / "src", dir_ / "dst", 0755);
  ::umask(old);
  EXPECT_EQ(read_file(dir_ / "dst"), big);
  EXPECT_EQ(mode_of(dir_ / "dst"), 0755u);
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++files;
  EXPECT_EQ(files, 2u);  // no temp left
  try {
    copy_file_atomic(dir_ / "none", dir_ / "dst2");
    ADD_FAILURE() << "copied a missing file";
  } catch (const FileError& e) {
    EXPECT_EQ(e.error_number(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("none"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir_ / "dst2"));
}

TEST_F(BaseTest, SameContentComparesEveryChunk) {
  std::string big(200'000, 'a');
  write_file_atomic(dir_ / "a", big);
  write_file_atomic(dir_ / "b", big);
  EXPECT_TRUE(same_content(dir_ / "a", dir_ / "b"));
  big.back() = 'b';  // same size, last byte of the last chunk differs
  write_file_atomic(dir_ / "b", big);
  EXPECT_FALSE(same_content(dir_ / "a", dir_ / "b"));
  big[70'000] = 'c';  // a middle chunk differs
  big.back() = 'a';
  write_file_atomic(dir_ / "b", big);
  EXPECT_FALSE(same_content(dir_ / "a", dir_ / "b"));
  write_file_atomic(dir_ / "b", big + "x");
  EXPECT_FALSE(same_content(dir_ / "a", dir_ / "b"));
  EXPECT_FALSE(same_content(dir_ / "a", dir_ / "none"));
  EXPECT_FALSE(same_content(dir_ / "none", dir_ / "a"));
}

TEST_F(BaseTest, EnsureDirSetsTheMode) {
  ensure_dir(dir_ / "a" / "b", 0700);
  EXPECT_EQ(mode_of(dir_ / "a" / "b"), 0700u);
  fs::permissions(dir_ / "a" / "b", fs::perms::all);
  ensure_dir(dir_ / "a" / "b", 0700);
  EXPECT_EQ(mode_of(dir_ / "a" / "b"), 0700u);
}

TEST_F(BaseTest, SeqpacketSocketIsRootOnlyAndCarriesLargeMessages) {
  const std::string path = (dir_ / "s.sock").string();
  std::ofstream(path) << "stale";  // replaced
  const mode_t old = ::umask(0);
  UniqueFd listener = listen_seqpacket(path, 4);
  ::umask(old);
  EXPECT_EQ(mode_of(path), 0600u);
  const std::string big(200 * 1024, 'a');  // a 200 KiB annotation's worth
  std::thread server([&] {
    UniqueFd c(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    const auto got = receive_message(c.get(), 1 << 20);
    send_message(c.get(), got ? std::to_string(got->size()) : "eof");
  });
  UniqueFd client = connect_seqpacket(path);
  send_message(client.get(), big);
  ASSERT_TRUE(wait_readable(client.get(), 5000));
  EXPECT_EQ(receive_message(client.get(), 100), std::to_string(big.size()));
  server.join();
}

TEST_F(BaseTest, AMessageOverTheLimitIsAClearError) {
  const std::string path = (dir_ / "s.sock").string();
  UniqueFd listener = listen_seqpacket(path, 4);
  UniqueFd client = connect_seqpacket(path);
  UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  send_message(client.get(), std::string(5000, 'x'));
  try {
    receive_message(server.get(), 4096);
    FAIL() << "no error";
  } catch (const SocketError& e) {
    EXPECT_EQ(std::string(e.what()), "message of 5000 bytes exceeds the limit of 4096");
  }
  ::shutdown(client.get(), SHUT_WR);
  EXPECT_FALSE(receive_message(server.get(), 4096).has_value());  // then the orderly end
  EXPECT_THROW(connect_seqpacket((dir_ / "none.sock").string()), SocketError);
}

}  // namespace
}  // namespace ambient::base
