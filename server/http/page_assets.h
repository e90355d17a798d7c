// The live page's static files (server/http/page/), compiled into the
// coordinator by cmake/EmbedFiles.cmake. They hold no data: every figure
// the page shows it fetches from the JSON endpoints with the user's token,
// so serving them to anyone tells nobody anything.
#ifndef DPFLEET_SERVER_HTTP_PAGE_ASSETS_H_
#define DPFLEET_SERVER_HTTP_PAGE_ASSETS_H_

#include <cstddef>
#include <string_view>

namespace dpfleet::server {

struct PageAsset {
  const char* name;          // file name under server/http/page/: "index.html"
  const char* content_type;  // from the extension
  const unsigned char* data;
  std::size_t size;

  std::string_view body() const { return {reinterpret_cast<const char*>(data), size}; }
};

// The embedded files, in the order CMake listed them.
const PageAsset* PageAssetsBegin();
const PageAsset* PageAssetsEnd();
// The file called `name`, or nullptr.
const PageAsset* FindPageAsset(std::string_view name);

}  // namespace dpfleet::server

#endif  // DPFLEET_SERVER_HTTP_PAGE_ASSETS_H_
