package cache

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubecord/kubecord/internal/redistest"
)

func redisFactory() storeFactory {
	return storeFactory{"redis", func(t *testing.T) Store {
		addr := redistest.Start(t).Addr
		st, err := NewRedis(t.Context(), "redis://"+addr, "kubecord:test:")
		if err != nil {
			t.Fatalf("NewRedis: %v", err)
		}
		return st
	}}
}

const testdataDir = "../../../../internal/discordjson/testdata/events"

// testdataNames lists the event fixtures, READY and GUILD_CREATE first so later events find
// their guild.
func testdataNames(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testdataDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures in %s: %v", testdataDir, err)
	}
	names := make([]string, 0, len(files))
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".json"))
	}
	first := map[string]int{"READY": 0, "GUILD_CREATE": 1}
	slices.SortStableFunc(names, func(a, b string) int {
		ra, oka := first[a]
		rb, okb := first[b]
		switch {
		case oka && okb:
			return ra - rb
		case oka:
			return -1
		case okb:
			return 1
		}
		return strings.Compare(a, b)
	})
	// GUILD_DELETE would purge the guild; apply it last.
	if i := slices.Index(names, "GUILD_DELETE"); i >= 0 {
		names = append(slices.Delete(names, i, i+1), "GUILD_DELETE")
	}
	return names
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdataDir, name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
