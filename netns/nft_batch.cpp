#include "netns/nft_batch.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>

#include "netns/error.h"

namespace ambient::netns::nft {
namespace {

constexpr std::size_t kHeader = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nfgenmsg));

[[noreturn]] void unusable(const std::string& why) {
  throw NetnsError(ErrorKind::Nftables, "recorded nf_tables batch not replayable: " + why);
}

std::uint16_t subsystem(const nlmsghdr& h) {
  return static_cast<std::uint16_t>(h.nlmsg_type >> 8);
}
std::uint16_t operation(const nlmsghdr& h) {
  return static_cast<std::uint16_t>(h.nlmsg_type & 0xff);
}

// One message of a recording: its header (copied: the payloads need not be aligned) and bytes.
struct Message {
  nlmsghdr header;
  std::string_view bytes;  // nlmsg_len bytes
};

std::vector<Message> split(const std::vector<std::string>& payloads) {
  std::vector<Message> out;
  for (const auto& p : payloads) {
    std::size_t at = 0;
    while (at < p.size()) {
      Message m{};
      if (p.size() - at < sizeof(nlmsghdr)) unusable("a truncated netlink header");
      std::memcpy(&m.header, p.data() + at, sizeof m.header);
      if (m.header.nlmsg_len < NLMSG_HDRLEN || m.header.nlmsg_len > p.size() - at) {
        unusable(fmt::format("a message claims {} bytes where {} remain", m.header.nlmsg_len,
                             p.size() - at));
      }
      m.bytes = std::string_view(p).substr(at, m.header.nlmsg_len);
      out.push_back(m);
      at += NLMSG_ALIGN(m.header.nlmsg_len);
    }
  }
  return out;
}

bool is_batch_begin(const nlmsghdr& h) {
  return h.nlmsg_type == NFNL_MSG_BATCH_BEGIN;
}
bool is_batch_end(const nlmsghdr& h) {
  return h.nlmsg_type == NFNL_MSG_BATCH_END;
}

// Read-only requests libnftables sends to fill its cache; harmless to leave out of a replay.
bool is_cache_query(const nlmsghdr& h) {
  if (subsystem(h) != NFNL_SUBSYS_NFTABLES) return false;
  switch (operation(h)) {
    case NFT_MSG_GETTABLE:
    case NFT_MSG_GETCHAIN:
    case NFT_MSG_GETRULE:
    case NFT_MSG_GETSET:
    case NFT_MSG_GETSETELEM:
    case NFT_MSG_GETGEN:
    case NFT_MSG_GETOBJ:
    case NFT_MSG_GETFLOWTABLE:
      return true;
    default:
      return false;
  }
}

const char* family_name(std::uint8_t family) {
  switch (family) {
    case NFPROTO_INET:
      return "inet";
    case NFPROTO_IPV4:
      return "ip";
    case NFPROTO_IPV6:
      return "ip6";
    case NFPROTO_ARP:
      return "arp";
    case NFPROTO_BRIDGE:
      return "bridge";
    case NFPROTO_NETDEV:
      return "netdev";
    default:
      return "?";
  }
}

// The top-level attributes of an nf_tables message, as (type, value) pairs.
struct Attr {
  std::uint16_t type;
  std::string_view value;
};
std::vector<Attr> attributes(const Message& m) {
  if (m.bytes.size() < kHeader) unusable("a message too short for its nfgenmsg header");
  std::vector<Attr> out;
  std::size_t at = kHeader;
  while (at + sizeof(nlattr) <= m.bytes.size()) {
    nlattr a{};
    std::memcpy(&a, m.bytes.data() + at, sizeof a);
    if (a.nla_len < sizeof(nlattr) || a.nla_len > m.bytes.size() - at) {
      unusable("a malformed attribute");
    }
    out.push_back({static_cast<std::uint16_t>(a.nla_type & NLA_TYPE_MASK),
                   m.bytes.substr(at + NLA_HDRLEN, a.nla_len - NLA_HDRLEN)});
    at += NLA_ALIGN(a.nla_len);
  }
  return out;
}

std::string string_attr(const std::vector<Attr>& attrs, std::uint16_t type) {
  for (const auto& a : attrs) {
    if (a.type == type) {
      std::string s(a.value);
      while (!s.empty() && s.back() == '\0') s.pop_back();
      return s;
    }
  }
  return "?";
}

bool has_attr(const std::vector<Attr>& attrs, std::uint16_t type) {
  for (const auto& a : attrs) {
    if (a.type == type) return true;
  }
  return false;
}

// Checks one message of the transaction and says what it does. Only what names its objects is
// accepted: a handle or a rule position would point at an object of the netns it was recorded in.
std::string check_and_describe(const Message& m) {
  if (subsystem(m.header) != NFNL_SUBSYS_NFTABLES) {
    unusable(fmt::format("message type {:#x} is not nf_tables", m.header.nlmsg_type));
  }
  constexpr std::uint16_t kAllowedFlags =
      NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_APPEND;
  if ((m.header.nlmsg_flags & ~kAllowedFlags) != 0) {
    unusable(
        fmt::format("message flags {:#x} (echo, replace or another request the replay does "
                    "not expect)",
                    m.header.nlmsg_flags));
  }
  nfgenmsg g{};
  std::memcpy(&g, m.bytes.data() + NLMSG_HDRLEN, sizeof g);
  const char* family = family_name(g.nfgen_family);
  const auto attrs = attributes(m);
  auto refuse_handle = [&](std::uint16_t type, const char* what) {
    if (has_attr(attrs, type)) unusable(fmt::format("a message refers to a {}", what));
  };
  switch (operation(m.header)) {
    case NFT_MSG_NEWTABLE:
    case NFT_MSG_DELTABLE:
      refuse_handle(NFTA_TABLE_HANDLE, "table by its kernel handle");
      return fmt::format("{} table {} {}",
                         operation(m.header) == NFT_MSG_NEWTABLE ? "add" : "delete", family,
                         string_attr(attrs, NFTA_TABLE_NAME));
    case NFT_MSG_NEWCHAIN:
    case NFT_MSG_DELCHAIN:
      refuse_handle(NFTA_CHAIN_HANDLE, "chain by its kernel handle");
      return fmt::format("{} chain {} {} {}",
                         operation(m.header) == NFT_MSG_NEWCHAIN ? "add" : "delete", family,
                         string_attr(attrs, NFTA_CHAIN_TABLE), string_attr(attrs, NFTA_CHAIN_NAME));
    case NFT_MSG_NEWRULE:
    case NFT_MSG_DELRULE: {
      refuse_handle(NFTA_RULE_HANDLE, "rule by its kernel handle");
      refuse_handle(NFTA_RULE_POSITION, "rule position (a kernel handle)");
      if (operation(m.header) == NFT_MSG_DELRULE && !has_attr(attrs, NFTA_RULE_CHAIN)) {
        return fmt::format("flush table {} {}", family, string_attr(attrs, NFTA_RULE_TABLE));
      }
      return fmt::format("{} rule {} {} {}",
                         operation(m.header) == NFT_MSG_NEWRULE ? "add" : "delete", family,
                         string_attr(attrs, NFTA_RULE_TABLE), string_attr(attrs, NFTA_RULE_CHAIN));
    }
    default:
      unusable(fmt::format("message type {:#x} is not an add or delete of a table, chain or rule",
                           m.header.nlmsg_type));
  }
}

// Zeroes the alignment padding after every attribute in bytes[from, to), nests included
// (libmnl marks them NLA_F_NESTED). libnftables leaves whatever its buffer held there; the kernel
// ignores it, but a batch should be the same bytes whatever libnftables' heap looked like.
void zero_padding(std::string& bytes, std::size_t from, std::size_t to) {
  std::size_t at = from;
  while (at + sizeof(nlattr) <= to) {
    nlattr a{};
    std::memcpy(&a, bytes.data() + at, sizeof a);
    if (a.nla_len < sizeof(nlattr) || a.nla_len > to - at) return;
    if (a.nla_type & NLA_F_NESTED) zero_padding(bytes, at + NLA_HDRLEN, at + a.nla_len);
    const std::size_t padded = std::min<std::size_t>(NLA_ALIGN(a.nla_len), to - at);
    std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(at + a.nla_len),
              bytes.begin() + static_cast<std::ptrdiff_t>(at + padded), '\0');
    at += padded;
  }
}

void append_frame(std::string& out, std::uint16_t type, std::uint32_t seq) {
  nlmsghdr h{};
  h.nlmsg_len = static_cast<std::uint32_t>(NLMSG_LENGTH(sizeof(nfgenmsg)));
  h.nlmsg_type = type;
  h.nlmsg_flags = NLM_F_REQUEST;
  h.nlmsg_seq = seq;
  nfgenmsg g{};
  g.nfgen_family = AF_UNSPEC;
  g.version = NFNETLINK_V0;
  g.res_id = htons(NFNL_SUBSYS_NFTABLES);
  out.append(reinterpret_cast<const char*>(&h), sizeof h);
  out.append(reinterpret_cast<const char*>(&g), sizeof g);
  out.append(NLMSG_ALIGN(h.nlmsg_len) - h.nlmsg_len, '\0');
}

// Closes a socket on every path.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// The kernel's explanation in an extended ack (NETLINK_EXT_ACK), when it gave one.
std::optional<std::string> ext_ack_message(const nlmsghdr* h) {
  if (!(h->nlmsg_flags & NLM_F_ACK_TLVS)) return std::nullopt;
  const auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
  std::size_t offset = NLMSG_HDRLEN + sizeof(nlmsgerr);
  if (!(h->nlmsg_flags & NLM_F_CAPPED)) offset += err->msg.nlmsg_len - sizeof(nlmsghdr);
  const auto* base = reinterpret_cast<const char*>(h);
  offset = NLMSG_ALIGN(offset);
  while (offset + sizeof(nlattr) <= h->nlmsg_len) {
    nlattr a{};
    std::memcpy(&a, base + offset, sizeof a);
    if (a.nla_len < sizeof(nlattr) || offset + a.nla_len > h->nlmsg_len) break;
    if ((a.nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG && a.nla_len > NLA_HDRLEN) {
      return std::string(base + offset + NLA_HDRLEN,
                         strnlen(base + offset + NLA_HDRLEN, a.nla_len - NLA_HDRLEN));
    }
    offset += NLA_ALIGN(a.nla_len);
  }
  return std::nullopt;
}

}  // namespace

Batch from_recording(const std::vector<std::string>& sendmsg_payloads) {
  const std::vector<Message> all = split(sendmsg_payloads);
  std::optional<std::size_t> begin, end;
  for (std::size_t i = 0; i < all.size(); ++i) {
    const nlmsghdr& h = all[i].header;
    if (is_batch_begin(h)) {
      if (begin) unusable("more than one transaction");
      begin = i;
    } else if (is_batch_end(h)) {
      if (!begin || end) unusable("BATCH_END without its BATCH_BEGIN");
      end = i;
    } else if ((!begin || end) && !is_cache_query(h)) {
      unusable(fmt::format("message type {:#x} outside the transaction", h.nlmsg_type));
    }
  }
  if (!begin) unusable("no transaction (libnftables' sendmsg() was not seen)");
  if (!end) unusable("the transaction has no BATCH_END");
  if (*end == *begin + 1) unusable("an empty transaction");

  Batch out;
  std::uint32_t seq = 0;
  append_frame(out.bytes, NFNL_MSG_BATCH_BEGIN, seq++);
  for (std::size_t i = *begin + 1; i < *end; ++i) {
    const Message& m = all[i];
    out.messages.push_back(check_and_describe(m));
    const std::size_t at = out.bytes.size();
    out.bytes.append(m.bytes);
    out.bytes.append(NLMSG_ALIGN(m.bytes.size()) - m.bytes.size(), '\0');
    nlmsghdr h = m.header;
    h.nlmsg_seq = seq++;
    h.nlmsg_pid = 0;
    // Only the last message asks for an ack: the kernel answers every message it refuses and
    // goes on to the end of the batch, so no error and that ack mean every message was taken
    // (an ack per message would cost the kernel ~40 µs more for a 38-message batch).
    h.nlmsg_flags &= static_cast<std::uint16_t>(~NLM_F_ACK);
    if (i + 1 == *end) h.nlmsg_flags |= NLM_F_ACK;
    std::memcpy(out.bytes.data() + at, &h, sizeof h);
    zero_padding(out.bytes, at + kHeader, at + m.bytes.size());
  }
  append_frame(out.bytes, NFNL_MSG_BATCH_END, seq);
  return out;
}

void replay_here(const Batch& batch) {
  Fd fd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER));
  if (fd.get() < 0) throw_errno("socket(NETLINK_NETFILTER)", errno);
  // Answers carry only the refused message's header (we know what each message is), plus the
  // kernel's explanation where it has one.
  const int one = 1;
  setsockopt(fd.get(), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  setsockopt(fd.get(), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  const ssize_t sent = sendto(fd.get(), batch.bytes.data(), batch.bytes.size(), 0,
                              reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel);
  if (sent < 0) throw_errno("send nf_tables batch", errno);
  if (static_cast<std::size_t>(sent) != batch.bytes.size()) {
    throw NetnsError(ErrorKind::Nftables,
                     fmt::format("nf_tables batch: sent {} of {} bytes", sent, batch.bytes.size()));
  }

  // nfnetlink runs the whole batch inside sendto(): every answer is queued by now.
  bool acked = false;
  std::vector<std::string> refused;
  alignas(nlmsghdr) std::array<char, 32768> buf;
  for (;;) {
    const ssize_t got = recv(fd.get(), buf.data(), buf.size(), MSG_DONTWAIT);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      throw_errno("read nf_tables answers", errno);
    }
    auto left = static_cast<unsigned>(got);  // NLMSG_OK compares it with nlmsg_len (__u32)
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, left);
         h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type != NLMSG_ERROR) continue;
      if (h->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) {
        refused.push_back("a truncated answer");
        continue;
      }
      const auto* err = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
      const std::uint32_t seq = err->msg.nlmsg_seq;
      const bool inner = seq >= 1 && seq <= batch.messages.size();
      if (err->error == 0) {
        if (seq == batch.messages.size()) acked = true;
        continue;
      }
      std::string what = inner ? batch.messages[seq - 1] : "the transaction";
      what += ": ";
      what += std::strerror(-err->error);
      if (auto ext = ext_ack_message(h)) what += " (" + *ext + ")";
      refused.push_back(std::move(what));
    }
  }
  if (!refused.empty()) {
    std::string all;
    for (const auto& r : refused) all += (all.empty() ? "" : "; ") + r;
    throw NetnsError(ErrorKind::Nftables, "nf_tables refused the batch: " + all);
  }
  if (!acked) {
    throw NetnsError(ErrorKind::Nftables,
                     fmt::format("nf_tables did not acknowledge the batch's last message ({})",
                                 batch.messages.back()));
  }
}

}  // namespace ambient::netns::nft
