// The exec floor: a static C++ program that reads stdin and echoes it, the least any plugin
// exec can cost. Built static by CMake; the anchor of the plugin benchmarks.
#include <iostream>
#include <iterator>
#include <string>

int main() {
  std::ios::sync_with_stdio(false);
  const std::string in((std::istreambuf_iterator<char>(std::cin)),
                       std::istreambuf_iterator<char>());
  std::cout << in;
  return 0;
}
