package jsonl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

type record struct {
	Loop  string    `json:"loop"`
	Tick  int64     `json:"tick"`
	Time  time.Time `json:"time"`
	Event []string  `json:"events"`
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "history.jsonl")
	in := []record{
		{Loop: "factory-qos", Tick: 1, Time: t0, Event: []string{"High jitter"}},
		{Loop: "factory-scaling", Tick: 7, Time: t0.Add(time.Second), Event: []string{"High cpu", "High memory"}},
		{Loop: "factory-priorities", Tick: 2, Time: t0.Add(2 * time.Second), Event: []string{"Raise memory above cpu <&>"}},
	}
	records := make([]any, len(in))
	for i := range in {
		records[i] = in[i]
	}
	require.NoError(t, Write(path, records))

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Contains(t, string(data), "<&>", "HTML is not escaped")
	var out []record
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var r record
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "line %q", sc.Text())
		out = append(out, r)
	}
	require.NoError(t, sc.Err())
	require.Len(t, out, 3)
	for i := range in {
		assert.Equal(t, in[i].Loop, out[i].Loop)
		assert.Equal(t, in[i].Tick, out[i].Tick)
		assert.True(t, in[i].Time.Equal(out[i].Time))
		assert.Equal(t, in[i].Event, out[i].Event)
	}
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())

	// Written whole or not at all: a record that cannot be encoded leaves the old file.
	err = Write(path, []any{in[0], make(chan int)})
	require.Error(t, err)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, data, after)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left")

	// No records: an empty file.
	empty := filepath.Join(dir, "empty.jsonl")
	require.NoError(t, Write(empty, nil))
	data, err = os.ReadFile(empty)
	require.NoError(t, err)
	assert.Empty(t, data)
}
