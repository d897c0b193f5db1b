package plot

import (
	"bytes"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// panels is a demo-like report: jitter brought under its target, egress stepping down,
// priorities swapping. scale changes the data.
func panels(scale float64) []Panel {
	var jitter, target, telemetry, video, cpu, memory []Point
	for i := range 120 {
		t := t0.Add(time.Duration(i) * 500 * time.Millisecond)
		j := scale * (0.5 + 4*math.Exp(-float64(i)/30))
		jitter = append(jitter, Point{t, j})
		if i%10 == 0 {
			bw := 1000 * math.Pow(0.8, float64(i/10)) * scale
			telemetry = append(telemetry, Point{t, bw})
			video = append(video, Point{t, bw * 0.9})
		}
		if i%40 == 0 {
			first := float64(1 + (i/40)%2)
			cpu = append(cpu, Point{t, first})
			memory = append(memory, Point{t, 3 - first})
		}
	}
	target = []Point{{t0, 2}, {t0.Add(time.Minute), 2}}
	return []Panel{
		{Title: "Jitter of robot-control", YLabel: "jitter (ms)", Series: []Series{
			{Name: "jitter", Unit: "ms", Points: jitter},
			{Name: "target 2 ms", Unit: "ms", Points: target, Step: true},
		}},
		{Title: "Granted egress bandwidth", Series: []Series{
			{Name: "telemetry-upload", Unit: "Mbit/s", Points: telemetry, Step: true},
			{Name: "video-archive", Unit: "Mbit/s", Points: video, Step: true},
		}},
		{Title: "Priorities of factory-scaling", YLabel: "rank (1 = first)", Series: []Series{
			{Name: "cpu", Points: cpu, Step: true},
			{Name: "memory", Points: memory, Step: true},
		}},
	}
}

func decode(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	return img
}

func TestPlotPNG(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.png"), filepath.Join(dir, "b.png")
	require.NoError(t, WritePNG(a, "governor demo", panels(1)))
	require.NoError(t, WritePNG(b, "governor demo", panels(1.5)))

	imgA, imgB := decode(t, a), decode(t, b)
	w, h := Size(3)
	assert.Equal(t, image.Rect(0, 0, w, h), imgA.Bounds())
	assert.Equal(t, image.Rect(0, 0, w, h), imgB.Bounds())
	assert.Equal(t, 1200, w)

	// Different data, different pixels; the same data, the same pixels.
	differ := 0
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			if imgA.At(x, y) != imgB.At(x, y) {
				differ++
			}
		}
	}
	assert.Greater(t, differ, 1000, "pixels that differ between two data sets")
	again := filepath.Join(dir, "again.png")
	require.NoError(t, WritePNG(again, "governor demo", panels(1)))
	da, err := os.ReadFile(a)
	require.NoError(t, err)
	dAgain, err := os.ReadFile(again)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(da, dAgain), "deterministic")

	// Not a white page: the lines are drawn in colour.
	colored := 0
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r, g, bl, _ := imgA.At(x, y).RGBA()
			if r != g || g != bl {
				colored++
			}
		}
	}
	assert.Greater(t, colored, 2000)

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 3, "no temporary files left")
}

func TestPlotPNGEdgeCases(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.png")
	require.Error(t, WritePNG(path, "none", nil))
	assert.NoFileExists(t, path)

	// Empty series, a single point, NaN and Inf, one panel.
	require.NoError(t, WritePNG(path, "odd", []Panel{{Title: "odd", Series: []Series{
		{Name: "empty"},
		{Name: "one", Points: []Point{{t0, 3}}},
		{Name: "nan", Points: []Point{{t0, math.NaN()}, {t0.Add(time.Second), math.Inf(1)}, {t0.Add(2 * time.Second), 1}}},
	}}}))
	w, h := Size(1)
	assert.Equal(t, image.Rect(0, 0, w, h), decode(t, path).Bounds())

	// No point at all.
	require.NoError(t, WritePNG(path, "nothing", []Panel{{Title: "a"}, {Title: "b", Series: []Series{{Name: "x"}}}}))
	w, h = Size(2)
	assert.Equal(t, image.Rect(0, 0, w, h), decode(t, path).Bounds())

	// A directory that does not exist: an error, nothing written.
	require.Error(t, WritePNG(filepath.Join(dir, "missing", "r.png"), "x", panels(1)))
}
