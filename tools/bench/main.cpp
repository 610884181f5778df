// lowbit-bench: the benchmark suites as a standalone executable (the same as
// `lowbit bench`; see bench_main.cpp).
#include "harness.hpp"

int main(int argc, char** argv) { return lowbit::bench::bench_main(argc, argv); }
