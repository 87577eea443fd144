package bench

import (
	"fmt"
	"os"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Plot writes an SVG with the latency distribution (top) and the throughput
// over time, per second, from counts per 100 ms (bottom).
func Plot(path, title string, lat []time.Duration, per100ms []uint64) error {
	if len(lat) == 0 {
		return fmt.Errorf("no latencies to plot")
	}
	hist := plot.New()
	hist.Title.Text = title + ": latency"
	hist.X.Label.Text = "latency (µs)"
	hist.Y.Label.Text = "count"
	vals := make(plotter.Values, len(lat))
	for i, d := range lat {
		vals[i] = float64(d.Microseconds())
	}
	h, err := plotter.NewHist(vals, 60)
	if err != nil {
		return err
	}
	hist.Add(h)

	tp := plot.New()
	tp.Title.Text = title + ": throughput"
	tp.X.Label.Text = "time (s)"
	tp.Y.Label.Text = "per second"
	pts := make(plotter.XYs, len(per100ms))
	for i, n := range per100ms {
		pts[i] = plotter.XY{X: float64(i+1) / 10, Y: float64(n) * 10}
	}
	line, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	tp.Add(line)

	const w, hgt = 8 * vg.Inch, 8 * vg.Inch
	img := vgsvg.New(w, hgt)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadY: vg.Millimeter * 5}
	canvases := plot.Align([][]*plot.Plot{{hist}, {tp}}, tiles, dc)
	hist.Draw(canvases[0][0])
	tp.Draw(canvases[1][0])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := img.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// curvePanel is one plot of a curve's SVG: metrics of the points of the
// given variants (all when nil) against x.
type curvePanel struct {
	title, ylabel string
	metrics       []string
	variants      []string
	logY          bool
}

// scalePanels are the plots of each dimension's SVG.
var scalePanels = map[string][]curvePanel{
	DimTables: {
		{title: "publications/s", ylabel: "per second", metrics: []string{"pubs_per_sec"}},
		{title: "latency publish→apply", ylabel: "µs", metrics: []string{"p50_us", "p99_us"}, logY: true},
		{title: "heap per table, all 3 nodes together", ylabel: "bytes", metrics: []string{"heap_bytes_per_table"}, variants: []string{variantTables}},
	},
	DimServices: {
		{title: "publications/s (4,096 in flight in all)", ylabel: "per second", metrics: []string{"pubs_per_sec"}},
		{title: "latency publish→apply", ylabel: "µs", metrics: []string{"p50_us", "p99_us"}, logY: true},
		{title: "publications per Raft entry", ylabel: "publications", metrics: []string{"pubs_per_commit"}},
	},
	DimSubscribers: {
		{title: "as fast as possible", ylabel: "per second", metrics: []string{"pubs_per_sec", "deliveries_per_sec"}, variants: []string{"max"}, logY: true},
		{title: "latency publish→apply at half that rate", ylabel: "µs", metrics: []string{"p50_us", "p99_us"}, variants: []string{"half rate"}, logY: true},
	},
	DimNodes: {
		{title: "publications/s (a subscriber on every other node)", ylabel: "per second", metrics: []string{"pubs_per_sec"}},
		{title: "latency at 1,000 publications/s", ylabel: "µs", metrics: []string{"rate_1000_p50_us", "rate_1000_p99_us"}},
		{title: "registry writes/s (64 clients)", ylabel: "per second", metrics: []string{"registry_ops_per_sec"}},
	},
	DimRows: {
		{title: "a new subscriber's snapshot", ylabel: "seconds", metrics: []string{"seconds"}, logY: true},
		{title: "snapshot throughput", ylabel: "MB/s", metrics: []string{"mb_per_sec"}},
		{title: "peak RSS", ylabel: "MB", metrics: []string{"publisher_rss_mb", "subscriber_rss_mb", "rss_mb"}, logY: true},
		{title: "the subscriber's cache", ylabel: "bytes per row", metrics: []string{"cache_bytes_per_row"}},
	},
	DimRegistry: {
		{title: "registry writes/s (64 clients)", ylabel: "per second", metrics: []string{"ops_per_sec"}},
		{title: "a new node current after joining", ylabel: "seconds", metrics: []string{"join_seconds"}, logY: true},
		{title: "snapshot and heap per table", ylabel: "bytes", metrics: []string{"bytes_per_table", "heap_bytes_per_table"}},
		{title: "building the registry", ylabel: "seconds", metrics: []string{"load_seconds"}, logY: true},
	},
}

// PlotScale writes an SVG of a dimension's curves: one plot per panel of
// scalePanels, each metric of each variant a line over x (a log axis when
// the points span 100 times or more).
func PlotScale(path, dim string, points []ScalePoint) error {
	panels, ok := scalePanels[dim]
	if !ok {
		return fmt.Errorf("no plots for dimension %q", dim)
	}
	if len(points) == 0 {
		return fmt.Errorf("no points to plot")
	}
	var variants []string
	lo, hi := points[0].X, points[0].X
	for _, p := range points {
		if !slices.Contains(variants, p.Variant) {
			variants = append(variants, p.Variant)
		}
		lo, hi = min(lo, p.X), max(hi, p.X)
	}
	logX := lo > 0 && hi >= 100*lo
	var rows [][]*plot.Plot
	for _, panel := range panels {
		pl := plot.New()
		pl.Title.Text = panel.title
		pl.X.Label.Text = dim
		pl.Y.Label.Text = panel.ylabel
		if logX {
			pl.X.Scale, pl.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		}
		pl.Legend.Top = true
		color := 0
		positive := true
		for _, v := range variants {
			if panel.variants != nil && !slices.Contains(panel.variants, v) {
				continue
			}
			for _, metric := range panel.metrics {
				var xys plotter.XYs
				for _, p := range points {
					if y, ok := p.Metrics[metric]; ok && p.Variant == v {
						xys = append(xys, plotter.XY{X: float64(p.X), Y: y})
						positive = positive && y > 0
					}
				}
				if len(xys) == 0 {
					continue
				}
				line, pts, err := plotter.NewLinePoints(xys)
				if err != nil {
					return err
				}
				line.Color, pts.Color = plotutil.Color(color), plotutil.Color(color)
				pts.Shape = plotutil.Shape(color)
				color++
				pl.Add(line, pts)
				label := metric
				if len(variants) > 1 && panel.variants == nil {
					label = v + ": " + metric
				}
				pl.Legend.Add(label, line, pts)
			}
		}
		if panel.logY && positive {
			pl.Y.Scale, pl.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		} else {
			pl.Y.Min = 0 // differences at their size
		}
		rows = append(rows, []*plot.Plot{pl})
	}
	w, h := 8*vg.Inch, vg.Length(len(rows))*4*vg.Inch
	img := vgsvg.New(w, h)
	dc := draw.New(img)
	canvases := plot.Align(rows, draw.Tiles{Rows: len(rows), Cols: 1, PadY: vg.Millimeter * 6}, dc)
	for i := range rows {
		rows[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := img.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
