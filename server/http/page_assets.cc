#include "server/http/page_assets.h"

namespace dpfleet::server {

const PageAsset* FindPageAsset(std::string_view name) {
  for (const PageAsset* a = PageAssetsBegin(); a != PageAssetsEnd(); ++a) {
    if (name == a->name) return a;
  }
  return nullptr;
}

}  // namespace dpfleet::server
