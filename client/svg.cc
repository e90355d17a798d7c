#include "client/svg.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dpfleet::client {
namespace {

constexpr double kMarginLeft = 64, kMarginRight = 180, kMarginTop = 36, kMarginBottom = 48;

std::string Num(double v) { return absl::StrFormat("%.2f", v); }

// A tick label: short, no trailing zeros.
std::string Tick(double v) { return absl::StrFormat("%.4g", v); }

}  // namespace

double PlotArea::X(double x) const {
  const double v = log_x ? std::log2(x) : x;
  return left + (v - x_min) / (x_max - x_min) * (right - left);
}

double PlotArea::Y(double y) const { return bottom - (y - y_min) / (y_max - y_min) * (bottom - top); }

PlotArea AreaOf(const Plot& plot) {
  PlotArea a;
  a.log_x = plot.log_x;
  a.left = kMarginLeft;
  a.top = kMarginTop;
  a.right = plot.width - kMarginRight;
  a.bottom = plot.height - kMarginBottom;
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const PlotSeries& s : plot.series) {
    for (const auto& [x, y] : s.points) {
      const double vx = plot.log_x ? std::log2(x) : x;
      x0 = std::min(x0, vx);
      x1 = std::max(x1, vx);
      y0 = std::min(y0, y);
      y1 = std::max(y1, y);
    }
  }
  for (const PlotBaseline& b : plot.baselines) {
    y0 = std::min(y0, b.y);
    y1 = std::max(y1, b.y);
  }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1;
  if (!std::isfinite(y0)) y0 = 0, y1 = 1;
  if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
  if (y1 - y0 < 1e-12) y0 -= 0.5, y1 += 0.5;
  const double pad = 0.05 * (y1 - y0);
  a.x_min = x0;
  a.x_max = x1;
  a.y_min = y0 - pad;
  a.y_max = y1 + pad;
  return a;
}

std::string XmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string RenderSvg(const Plot& plot) {
  const PlotArea a = AreaOf(plot);
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
      "<text x=\"%s\" y=\"20\" font-size=\"14\" font-weight=\"bold\">%s</text>\n",
      plot.width, plot.height, plot.width, plot.height, Num(a.left), XmlEscape(plot.title));
  // Axes, ticks and grid.
  absl::StrAppend(&svg, "<g class=\"axes\" stroke=\"#333\" fill=\"none\">\n", "<line x1=\"", Num(a.left), "\" y1=\"",
                  Num(a.bottom), "\" x2=\"", Num(a.right), "\" y2=\"", Num(a.bottom), "\"/>\n", "<line x1=\"",
                  Num(a.left), "\" y1=\"", Num(a.top), "\" x2=\"", Num(a.left), "\" y2=\"", Num(a.bottom),
                  "\"/>\n</g>\n<g class=\"ticks\" fill=\"#333\">\n");
  constexpr int kTicks = 5;
  for (int i = 0; i <= kTicks; ++i) {
    const double vy = a.y_min + (a.y_max - a.y_min) * i / kTicks;
    const double py = a.Y(vy);
    absl::StrAppend(&svg, "<line x1=\"", Num(a.left), "\" y1=\"", Num(py), "\" x2=\"", Num(a.right), "\" y2=\"",
                    Num(py), "\" stroke=\"#eee\"/>\n", "<text x=\"", Num(a.left - 6), "\" y=\"", Num(py + 4),
                    "\" text-anchor=\"end\">", Tick(vy), "</text>\n");
    const double vx = a.x_min + (a.x_max - a.x_min) * i / kTicks;
    const double px = a.left + (a.right - a.left) * i / kTicks;
    absl::StrAppend(&svg, "<text x=\"", Num(px), "\" y=\"", Num(a.bottom + 16), "\" text-anchor=\"middle\">",
                    Tick(plot.log_x ? std::exp2(vx) : vx), "</text>\n");
  }
  absl::StrAppend(&svg, "<text x=\"", Num((a.left + a.right) / 2), "\" y=\"", Num(a.bottom + 36),
                  "\" text-anchor=\"middle\">", XmlEscape(plot.x_label), plot.log_x ? " (log scale)" : "", "</text>\n",
                  "<text transform=\"translate(16,", Num((a.top + a.bottom) / 2),
                  ") rotate(-90)\" text-anchor=\"middle\">", XmlEscape(plot.y_label), "</text>\n</g>\n");
  bool any = !plot.baselines.empty();
  double legend_y = a.top + 6;
  auto legend = [&](const std::string& name, const std::string& color, bool dashed) {
    absl::StrAppend(&svg, "<line x1=\"", Num(a.right + 12), "\" y1=\"", Num(legend_y), "\" x2=\"", Num(a.right + 32),
                    "\" y2=\"", Num(legend_y), "\" stroke=\"", color, "\" stroke-width=\"2\"",
                    dashed ? " stroke-dasharray=\"6 4\"" : "", "/>\n<text x=\"", Num(a.right + 38), "\" y=\"",
                    Num(legend_y + 4), "\">", XmlEscape(name), "</text>\n");
    legend_y += 18;
  };
  for (const PlotBaseline& b : plot.baselines) {
    absl::StrAppend(&svg, "<line data-baseline=\"", XmlEscape(b.name), "\" data-y=\"", b.y, "\" x1=\"", Num(a.left),
                    "\" y1=\"", Num(a.Y(b.y)), "\" x2=\"", Num(a.right), "\" y2=\"", Num(a.Y(b.y)), "\" stroke=\"",
                    b.color, "\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/>\n");
    legend(b.name, b.color, true);
  }
  for (const PlotSeries& s : plot.series) {
    if (s.points.empty()) continue;
    any = true;
    std::string points;
    for (const auto& [x, y] : s.points)
      absl::StrAppend(&points, points.empty() ? "" : " ", Num(a.X(x)), ",", Num(a.Y(y)));
    absl::StrAppend(&svg, "<polyline data-series=\"", XmlEscape(s.name), "\" points=\"", points,
                    "\" fill=\"none\" stroke=\"", s.color, "\" stroke-width=\"2\"/>\n");
    for (const auto& [x, y] : s.points) {
      absl::StrAppend(&svg, "<circle cx=\"", Num(a.X(x)), "\" cy=\"", Num(a.Y(y)), "\" r=\"3\" fill=\"", s.color,
                      "\"><title>", Tick(x), ", ", Tick(y), "</title></circle>\n");
    }
    legend(s.name, s.color, false);
  }
  if (!any) {
    absl::StrAppend(&svg, "<text x=\"", Num((a.left + a.right) / 2), "\" y=\"", Num((a.top + a.bottom) / 2),
                    "\" text-anchor=\"middle\">no data</text>\n");
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace dpfleet::client
