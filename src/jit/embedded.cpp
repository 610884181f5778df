#include "jit/embedded.hpp"

#include "common/sha256.hpp"

namespace lowbit {

const std::string& embedded_templates_digest() {
  static const std::string digest = [] {
    Sha256 h;
    for (const EmbeddedFile& f : embedded_templates()) {
      h.update_field(f.name);
      h.update_field(std::string_view(f.data, f.size));
    }
    return to_hex(h.finish());
  }();
  return digest;
}

}  // namespace lowbit
