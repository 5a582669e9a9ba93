#pragma once

#include <stdexcept>
#include <string>

namespace ambient::install {

// Something the installer cannot do: bad input (a flag, a missing source binary, an unreadable
// service-account token) or a failed write. The message names the path or value at fault.
class InstallError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace ambient::install
