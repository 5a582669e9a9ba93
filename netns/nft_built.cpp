// The batches nft_batch.h builds itself (element changes, table removal): netlink bytes laid out
// as libmnl/libnftnl lay them out for libnftables, so the kernel sees exactly what nft would send
// for the same commands.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include <cstdint>
#include <cstring>

#include "netns/error.h"
#include "netns/nft_batch.h"

namespace ambient::netns::nft {
namespace {

// libnftnl's user-data TLV type for an element's comment (NFTNL_UDATA_SET_ELEM_COMMENT).
constexpr std::uint8_t kUdataElemComment = 0;

class Writer {
 public:
  std::size_t begin_message(std::uint16_t type, std::uint16_t flags, std::uint32_t seq,
                            std::uint8_t family, std::uint16_t res_id) {
    const std::size_t start = out_.size();
    nlmsghdr h{};
    h.nlmsg_type = type;
    h.nlmsg_flags = flags;
    h.nlmsg_seq = seq;
    append(&h, sizeof h);
    nfgenmsg g{};
    g.nfgen_family = family;
    g.version = NFNETLINK_V0;
    g.res_id = htons(res_id);
    append(&g, sizeof g);
    pad(NLMSG_ALIGN(out_.size()) - out_.size());
    return start;
  }
  void end_message(std::size_t start) { set_u32(start, out_.size() - start); }

  // NFNL_MSG_BATCH_BEGIN or NFNL_MSG_BATCH_END: the frame around a batch's messages.
  void batch_frame(std::uint16_t type, std::uint32_t seq) {
    end_message(begin_message(type, NLM_F_REQUEST, seq, AF_UNSPEC, NFNL_SUBSYS_NFTABLES));
  }

  void attr(std::uint16_t type, std::string_view value) {
    nlattr a{};
    a.nla_type = type;
    a.nla_len = static_cast<std::uint16_t>(NLA_HDRLEN + value.size());
    append(&a, sizeof a);
    append(value.data(), value.size());
    pad(NLA_ALIGN(value.size()) - value.size());
  }
  // A NUL-terminated string attribute, as mnl_attr_put_strz writes it.
  void strz(std::uint16_t type, std::string_view value) {
    std::string v(value);
    v.push_back('\0');
    attr(type, v);
  }
  std::size_t begin_nest(std::uint16_t type) {
    const std::size_t start = out_.size();
    nlattr a{};
    a.nla_type = static_cast<std::uint16_t>(type | NLA_F_NESTED);
    append(&a, sizeof a);
    return start;
  }
  void end_nest(std::size_t start) {
    const auto len = static_cast<std::uint16_t>(out_.size() - start);
    std::memcpy(out_.data() + start, &len, sizeof len);
  }
  std::string take() { return std::move(out_); }

 private:
  void append(const void* p, std::size_t n) { out_.append(static_cast<const char*>(p), n); }
  void pad(std::size_t n) { out_.append(n, '\0'); }
  void set_u32(std::size_t at, std::size_t v) {
    const auto len = static_cast<std::uint32_t>(v);
    std::memcpy(out_.data() + at, &len, sizeof len);
  }
  std::string out_;
};

std::string describe(std::string_view table, const SetElementOp& op) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (op.key.size() == 4 || op.key.size() == 16) {
    inet_ntop(op.key.size() == 4 ? AF_INET : AF_INET6, op.key.data(), text, sizeof text);
  }
  return fmt::format("{} element inet {} {} {{ {} }}", op.add ? "add" : "delete", table, op.set,
                     text);
}

}  // namespace

Batch set_elements_batch(std::string_view table, const std::vector<SetElementOp>& ops) {
  if (table.empty()) throw NetnsError(ErrorKind::InvalidArgument, "set element batch: no table");
  Batch batch;
  Writer w;
  std::uint32_t seq = 0;
  w.batch_frame(NFNL_MSG_BATCH_BEGIN, seq++);
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const auto& op = ops[i];
    if (op.set.empty() || (op.key.size() != 4 && op.key.size() != 16)) {
      throw NetnsError(ErrorKind::InvalidArgument,
                       fmt::format("set element batch: bad element ({} key bytes, set '{}')",
                                   op.key.size(), op.set));
    }
    const std::uint16_t type = static_cast<std::uint16_t>(
        (NFNL_SUBSYS_NFTABLES << 8) | (op.add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM));
    std::uint16_t flags = NLM_F_REQUEST;
    if (op.add) flags |= NLM_F_CREATE;
    if (i + 1 == ops.size()) flags |= NLM_F_ACK;  // the kernel went through to the end
    const std::size_t msg = w.begin_message(type, flags, seq++, NFPROTO_INET, 0);
    w.strz(NFTA_SET_ELEM_LIST_TABLE, table);
    w.strz(NFTA_SET_ELEM_LIST_SET, op.set);
    const std::size_t elements = w.begin_nest(NFTA_SET_ELEM_LIST_ELEMENTS);
    const std::size_t element = w.begin_nest(NFTA_LIST_ELEM);
    const std::size_t key = w.begin_nest(NFTA_SET_ELEM_KEY);
    w.attr(NFTA_DATA_VALUE, op.key);
    w.end_nest(key);
    if (op.add && !op.comment.empty()) {
      if (op.comment.size() + 1 > 255) {
        throw NetnsError(ErrorKind::InvalidArgument, "set element batch: comment too long");
      }
      std::string udata;
      udata.push_back(static_cast<char>(kUdataElemComment));
      udata.push_back(static_cast<char>(op.comment.size() + 1));
      udata += op.comment;
      udata.push_back('\0');
      w.attr(NFTA_SET_ELEM_USERDATA, udata);
    }
    w.end_nest(element);
    w.end_nest(elements);
    w.end_message(msg);
    batch.messages.push_back(describe(table, op));
  }
  w.batch_frame(NFNL_MSG_BATCH_END, seq);
  batch.bytes = w.take();
  return batch;
}

Batch remove_tables_batch(const std::vector<std::string_view>& tables) {
  Batch batch;
  Writer w;
  std::uint32_t seq = 0;
  w.batch_frame(NFNL_MSG_BATCH_BEGIN, seq++);
  for (std::size_t i = 0; i < tables.size(); ++i) {
    if (tables[i].empty()) throw NetnsError(ErrorKind::InvalidArgument, "table batch: no name");
    // add (made if missing, no error if there), then delete: absent afterwards either way.
    std::size_t m = w.begin_message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE, NLM_F_REQUEST,
                                    seq++, NFPROTO_INET, 0);
    w.strz(NFTA_TABLE_NAME, tables[i]);
    w.attr(NFTA_TABLE_FLAGS, std::string(4, '\0'));
    w.end_message(m);
    batch.messages.push_back(fmt::format("add table inet {}", tables[i]));
    std::uint16_t flags = NLM_F_REQUEST;
    if (i + 1 == tables.size()) flags |= NLM_F_ACK;
    m = w.begin_message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELTABLE, flags, seq++, NFPROTO_INET,
                        0);
    w.strz(NFTA_TABLE_NAME, tables[i]);
    w.end_message(m);
    batch.messages.push_back(fmt::format("delete table inet {}", tables[i]));
  }
  w.batch_frame(NFNL_MSG_BATCH_END, seq);
  batch.bytes = w.take();
  return batch;
}

}  // namespace ambient::netns::nft
