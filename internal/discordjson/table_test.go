package discordjson

import "testing"

// TestLookupMatchesFields checks the key index against the field map for every table built.
func TestLookupMatchesFields(t *testing.T) {
	t.Parallel()
	tablesMu.RLock()
	defer tablesMu.RUnlock()
	if len(tables) < 50 {
		t.Fatalf("only %d tables built", len(tables))
	}
	for md, tb := range tables {
		for key, f := range tb.fields {
			if got := tb.lookup([]byte(key)); got != f {
				t.Errorf("%s: lookup(%q) = %v, want the field", md.FullName(), key, got)
			}
			for _, miss := range []string{key + "x", "x" + key, key[:len(key)-1]} {
				if tb.fields[miss] == nil && tb.lookup([]byte(miss)) != nil {
					t.Errorf("%s: lookup(%q) found a field", md.FullName(), miss)
				}
			}
		}
		if tb.lookup(nil) != nil || tb.lookup([]byte("no_such_key_anywhere")) != nil {
			t.Errorf("%s: lookup of an unknown key found a field", md.FullName())
		}
	}
}
