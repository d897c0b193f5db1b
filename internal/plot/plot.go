// Package plot draws time series stacked in panels over one shared time axis, into a PNG
// file (WritePNG, with gonum.org/v1/plot). `governor demo` and `governor replay` plot what
// their loops saw and did with it.
package plot

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"os"
	"slices"
	"strconv"
	"time"

	"golang.org/x/image/font"
	gonum "gonum.org/v1/plot"
	plotfont "gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"governor.dev/governor/internal/atomicfile"
)

// Point is one value of a series at a time.
type Point struct {
	T time.Time
	V float64
}

// Series is a named time series. A Step series holds each value until the next point (and
// its last value until the end of the time axis), as a setting does; otherwise points are
// joined by straight lines, as samples of a measure are.
type Series struct {
	Name, Unit string
	Points     []Point
	Step       bool
}

// Panel is one plot of the stack: its series share its Y axis. YLabel names the axis; when
// it is empty, the series' common Unit does.
type Panel struct {
	Title, YLabel string
	Series        []Series
}

// The size of the image WritePNG writes, in pixels: Width wide, TitleHeight for the title and
// PanelHeight for each panel high (Size computes it).
const (
	Width       = 1200
	TitleHeight = 44
	PanelHeight = 270
	// dpi is the resolution: 12 pt text is 16 pixels high.
	dpi = 96
)

// Size is the width and height in pixels of the image WritePNG draws for n panels.
func Size(n int) (width, height int) {
	return Width, TitleHeight + max(n, 1)*PanelHeight
}

// palette is the colors of the series of a panel, in order (Tableau 10: distinct, and
// readable on white).
var palette = []color.RGBA{
	{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // blue
	{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, // orange
	{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // green
	{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, // red
	{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, // purple
	{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff}, // brown
	{R: 0xe3, G: 0x77, B: 0xc2, A: 0xff}, // pink
	{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}, // grey
}

// WritePNG draws panels stacked vertically, the first on top, over one shared time axis
// (seconds since the earliest point of any series, labelled on the bottom panel only), each
// with its own Y axis and, to its right, its legend; title heads the image. The image is
// Size(len(panels)) pixels. Points need not be sorted; NaN and infinite values are left out.
// The file is written whole or not at all.
func WritePNG(path, title string, panels []Panel) error {
	if len(panels) == 0 {
		return errors.New("plot: no panels to plot")
	}
	t0, t1 := timeRange(panels)
	span := t1.Sub(t0).Seconds()
	if span <= 0 {
		span = 1
	}
	xOf := func(t time.Time) float64 { return t.Sub(t0).Seconds() }

	plots := make([][]*gonum.Plot, len(panels))
	legends := make([]gonum.Legend, len(panels))
	for i, panel := range panels {
		p, legend, err := panelPlot(panel, xOf, span, i == len(panels)-1)
		if err != nil {
			return fmt.Errorf("plot: panel %q: %w", panel.Title, err)
		}
		plots[i] = []*gonum.Plot{p}
		legends[i] = legend
	}
	plots[len(plots)-1][0].X.Label.Text = "seconds since " + t0.Format("2006-01-02 15:04:05 MST")

	w, h := Size(len(panels))
	img := vgimg.NewWith(vgimg.UseWH(pixels(w), pixels(h)), vgimg.UseDPI(dpi))
	dc := draw.New(img)

	// The title, centred on top.
	titleStyle := gonum.New().Title.TextStyle
	titleStyle.Font = sans(16, true)
	titleStyle.XAlign = draw.XCenter
	titleStyle.YAlign = draw.YCenter
	dc.FillText(titleStyle, vg.Point{X: dc.Center().X, Y: dc.Max.Y - pixels(TitleHeight)/2}, title)

	// The legends take a column on the right, as wide as the widest; the plots the rest.
	legendWidth := vg.Length(0)
	for i := range legends {
		legendWidth = max(legendWidth, legendExtent(&legends[i]))
	}
	legendWidth = min(legendWidth, dc.Size().X*2/5)
	pad := vg.Points(8)
	area := draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{
		Min: dc.Min,
		Max: vg.Point{X: dc.Max.X - legendWidth - 2*pad, Y: dc.Max.Y - pixels(TitleHeight)},
	}}
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: pad, PadBottom: pad, PadLeft: pad, PadRight: pad, PadY: vg.Points(6)}
	canvases := gonum.Align(plots, tiles, area)
	for i := range plots {
		c := canvases[i][0]
		plots[i][0].Draw(c)
		// The legend, level with the top of the panel's data area.
		data := plots[i][0].DataCanvas(c)
		lc := draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{
			Min: vg.Point{X: area.Max.X + pad, Y: c.Min.Y},
			Max: vg.Point{X: dc.Max.X - pad, Y: data.Max.Y},
		}}
		legends[i].Draw(lc)
	}
	return atomicfile.Write(path, func(f *os.File) error {
		_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(f)
		return err
	})
}

// pixels is the length of n pixels at dpi.
func pixels(n int) vg.Length { return vg.Length(n) * vg.Inch / dpi }

// timeRange is the earliest and the latest time of any point; now, twice, when there is none.
func timeRange(panels []Panel) (time.Time, time.Time) {
	var t0, t1 time.Time
	for _, panel := range panels {
		for _, s := range panel.Series {
			for _, p := range s.Points {
				if !usable(p.V) {
					continue
				}
				if t0.IsZero() || p.T.Before(t0) {
					t0 = p.T
				}
				if t1.IsZero() || p.T.After(t1) {
					t1 = p.T
				}
			}
		}
	}
	if t0.IsZero() {
		t0 = time.Now()
		t1 = t0
	}
	return t0, t1
}

func usable(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// panelPlot builds one panel's plot and its legend.
func panelPlot(panel Panel, xOf func(time.Time) float64, span float64, bottom bool) (*gonum.Plot, gonum.Legend, error) {
	p := gonum.New()
	p.Title.Text = panel.Title
	p.Title.TextStyle.Font = sans(12, true)
	p.Title.Padding = vg.Points(4)
	p.X.Label.TextStyle.Font = sans(11, false)
	p.Y.Label.TextStyle.Font = sans(11, false)
	p.X.Tick.Label.Font = sans(10, false)
	p.Y.Tick.Label.Font = sans(10, false)
	p.X.Tick.Marker = niceTicks{n: 12, labels: bottom}
	p.Y.Tick.Marker = niceTicks{n: 6, labels: true}
	p.Y.Label.Text = panel.YLabel
	if p.Y.Label.Text == "" {
		p.Y.Label.Text = commonUnit(panel.Series)
	}
	p.X.Min, p.X.Max = 0, span
	p.X.Padding, p.Y.Padding = 0, 0
	legend := gonum.NewLegend()
	legend.Top, legend.Left = true, true
	legend.ThumbnailWidth = vg.Points(22)
	legend.TextStyle.Font = sans(11, false)
	legend.Padding = vg.Points(3)

	lo, hi := math.Inf(1), math.Inf(-1)
	integers := true
	p.Add(grid{})
	for i, s := range panel.Series {
		xys := make(plotter.XYs, 0, len(s.Points)+1)
		for _, pt := range sorted(s.Points) {
			if !usable(pt.V) {
				continue
			}
			xys = append(xys, plotter.XY{X: xOf(pt.T), Y: pt.V})
			lo, hi = math.Min(lo, pt.V), math.Max(hi, pt.V)
			integers = integers && pt.V == math.Trunc(pt.V)
		}
		if s.Step && len(xys) > 0 && xys[len(xys)-1].X < span {
			// A setting holds until the end.
			xys = append(xys, plotter.XY{X: span, Y: xys[len(xys)-1].Y})
		}
		line := &plotter.Line{XYs: xys, LineStyle: plotter.DefaultLineStyle}
		line.Color = palette[i%len(palette)]
		// The first series is drawn wider: where the next ones cover it (equal values), it
		// still shows along their edges.
		line.Width = vg.Points(1.6)
		if i == 0 && len(panel.Series) > 1 {
			line.Width = vg.Points(2.6)
		}
		if i >= len(palette) {
			line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		if s.Step {
			line.StepStyle = plotter.PostStep
		}
		if len(xys) > 0 {
			p.Add(line)
		}
		legend.Add(s.Name, line)
	}
	if math.IsInf(lo, 1) { // no data
		lo, hi, integers = 0, 1, false
	}
	p.Y.Min, p.Y.Max = yRange(lo, hi, integers)
	if integers && hi-lo <= 12 {
		p.Y.Tick.Marker = integerTicks{}
	}
	return p, legend, nil
}

// yRange pads the data's range so that no line runs along the frame.
func yRange(lo, hi float64, integers bool) (float64, float64) {
	if integers && hi-lo <= 12 {
		return lo - 0.5, hi + 0.5
	}
	if hi == lo {
		d := math.Max(math.Abs(lo)*0.1, 0.5)
		return lo - d, hi + d
	}
	d := (hi - lo) * 0.08
	low := lo - d
	if lo >= 0 && low < 0 {
		low = 0
	}
	return low, hi + d
}

// commonUnit is the unit every series of a panel has, or "".
func commonUnit(series []Series) string {
	if len(series) == 0 {
		return ""
	}
	u := series[0].Unit
	for _, s := range series[1:] {
		if s.Unit != u {
			return ""
		}
	}
	return u
}

func sorted(points []Point) []Point {
	out := slices.Clone(points)
	slices.SortStableFunc(out, func(a, b Point) int { return a.T.Compare(b.T) })
	return out
}

// legendExtent is the width a legend needs.
func legendExtent(l *gonum.Legend) vg.Length {
	r := l.Rectangle(draw.Canvas{})
	return r.Max.X - r.Min.X
}

// sans is the Liberation Sans font (gonum's default typeface is the serif one).
func sans(size float64, bold bool) plotfont.Font {
	f := plotfont.Font{Typeface: "Liberation", Variant: "Sans", Size: vg.Points(size)}
	if bold {
		f.Weight = font.WeightBold
	}
	return f
}

// niceTicks marks about n round values (steps of 1, 2 or 5 times a power of ten) of a
// range, labelled or not (the panels above the bottom one share its time labels).
type niceTicks struct {
	n      int
	labels bool
}

func (nt niceTicks) Ticks(lo, hi float64) []gonum.Tick {
	if !(hi > lo) {
		return []gonum.Tick{{Value: lo, Label: label(lo, 1, nt.labels)}}
	}
	raw := (hi - lo) / float64(nt.n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ticks []gonum.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		v = math.Round(v/step) * step // no accumulated error
		ticks = append(ticks, gonum.Tick{Value: v, Label: label(v, step, nt.labels)})
	}
	return ticks
}

// label is v written with as many decimals as step needs; a major tick without its label
// keeps a blank one (an empty label would make it a minor tick).
func label(v, step float64, show bool) string {
	if !show {
		return " "
	}
	decimals := max(0, int(-math.Floor(math.Log10(step)+1e-9)))
	if v == 0 {
		v = 0 // not -0
	}
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// integerTicks marks every whole number of a small range (counts, ranks).
type integerTicks struct{}

func (integerTicks) Ticks(lo, hi float64) []gonum.Tick {
	var ticks []gonum.Tick
	for v := math.Ceil(lo); v <= hi; v++ {
		ticks = append(ticks, gonum.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
	}
	return ticks
}

// grid draws light lines at the labelled ticks of both axes.
type grid struct{}

var gridStyle = draw.LineStyle{Color: color.Gray{Y: 0xdd}, Width: vg.Points(0.5)}

func (grid) Plot(c draw.Canvas, p *gonum.Plot) {
	trX, trY := p.Transforms(&c)
	for _, tk := range p.X.Tick.Marker.Ticks(p.X.Min, p.X.Max) {
		if x := trX(tk.Value); !tk.IsMinor() && x >= c.Min.X && x <= c.Max.X {
			c.StrokeLine2(gridStyle, x, c.Min.Y, x, c.Max.Y)
		}
	}
	for _, tk := range p.Y.Tick.Marker.Ticks(p.Y.Min, p.Y.Max) {
		if y := trY(tk.Value); !tk.IsMinor() && y >= c.Min.Y && y <= c.Max.Y {
			c.StrokeLine2(gridStyle, c.Min.X, y, c.Max.X, y)
		}
	}
}
