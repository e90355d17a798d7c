// Plain-SVG line plots for `dpctl report`: axes with ticks, one polyline per
// series (one vertex per point, in order), an optional horizontal baseline.
// Text only: no drawing library, nothing but the numbers given is rendered.
//
// Every series' polyline carries data-series="NAME" and every baseline
// data-baseline="NAME" so that tests and scripts can find them; the point
// coordinates are exactly PlotArea::X / PlotArea::Y of the data.
#ifndef DPFLEET_CLIENT_SVG_H_
#define DPFLEET_CLIENT_SVG_H_

#include <string>
#include <utility>
#include <vector>

namespace dpfleet::client {

struct PlotSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), drawn in this order
  std::string color = "#1f77b4";
};

struct PlotBaseline {
  std::string name;  // legend text, e.g. "non-private (job-3)"
  double y = 0;
  std::string color = "#7f7f7f";
};

struct Plot {
  std::string title, x_label, y_label;
  std::vector<PlotSeries> series;
  std::vector<PlotBaseline> baselines;
  bool log_x = false;  // x axis in log2 (all x must be > 0)
  int width = 640, height = 400;
};

// The data -> pixel mapping of a plot (ranges padded from the data).
struct PlotArea {
  double left = 0, top = 0, right = 0, bottom = 0;    // pixels
  double x_min = 0, x_max = 1, y_min = 0, y_max = 1;  // data (x in log2 when log_x)
  bool log_x = false;
  double X(double x) const;
  double Y(double y) const;
};

PlotArea AreaOf(const Plot& plot);

// The whole <svg> document. A plot without points says "no data".
std::string RenderSvg(const Plot& plot);

// Escapes &, <, >, " for XML text and attributes.
std::string XmlEscape(const std::string& s);

}  // namespace dpfleet::client

#endif  // DPFLEET_CLIENT_SVG_H_
