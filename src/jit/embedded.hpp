// The kernel templates (kernel_templates/*.cuh), embedded into the library at
// build time by a Meson custom_target: NVRTC gets them as in-memory headers,
// so nothing is read from disk at run time.
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace lowbit {

struct EmbeddedFile {
  const char* name;  // "prelude.cuh"
  const char* data;
  size_t size;
};

// Generated (embedded_templates.cpp).
std::span<const EmbeddedFile> embedded_templates();

// SHA-256 over every embedded file's name and contents (each as a length-
// prefixed field), computed at build time by tools/embed_files.py: part of
// every cache key, so editing any template invalidates its kernels.
const std::string& embedded_templates_digest();

}  // namespace lowbit
