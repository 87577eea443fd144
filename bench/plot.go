package bench

import (
	"fmt"
	"os"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
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
