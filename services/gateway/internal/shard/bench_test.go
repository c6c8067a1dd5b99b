package shard

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kubecord/kubecord/internal/discordjson"
)

// feedMix is the share of each fixture in the benchmark feed, roughly what a large bot
// sees: presences and typing dominate, then messages.
var feedMix = []struct {
	name   string
	weight int
}{
	{"PRESENCE_UPDATE", 40},
	{"TYPING_START", 20},
	{"MESSAGE_CREATE", 20},
	{"GUILD_MEMBER_UPDATE", 10},
	{"MESSAGE_REACTION_ADD", 10},
}

var words = strings.Fields("the gateway shard resumes from the watermark so no event is lost between discord and your worker " +
	"lol ok yes no maybe tomorrow deploy rollback metrics latency redis pod node queue ack credit guild channel thread")

// realisticFeed builds n gateway dispatch payloads from the fixtures in testdata, with
// fresh ids, names and text in each so the compressor sees realistic entropy.
func realisticFeed(tb testing.TB, n int) [][]byte { return realisticFeedFrom(tb, n, 1) }

// realisticFeedFrom is realisticFeed with sequence numbers starting at first.
func realisticFeedFrom(tb testing.TB, n int, first uint64) [][]byte {
	tb.Helper()
	r := rand.New(rand.NewPCG(42, 7))
	templates := map[string]string{}
	for _, m := range feedMix {
		b, err := os.ReadFile(filepath.Join("testdata", m.name+".json"))
		if err != nil {
			tb.Fatal(err)
		}
		templates[m.name] = strings.TrimSpace(string(b))
	}
	guilds := make([]string, 200)
	for i := range guilds {
		guilds[i] = strconv.FormatUint(1<<60+r.Uint64N(1<<59), 10)
	}
	snowflake := func() string { return strconv.FormatUint(1<<60+r.Uint64N(1<<59), 10) }
	name := func() string { return words[r.IntN(len(words))] + strconv.Itoa(r.IntN(10000)) }
	text := func() string {
		var b strings.Builder
		for range 3 + r.IntN(30) {
			b.WriteString(words[r.IntN(len(words))])
			b.WriteByte(' ')
		}
		return b.String()
	}
	total := 0
	for _, m := range feedMix {
		total += m.weight
	}
	out := make([][]byte, n)
	for i := range out {
		pick := r.IntN(total)
		var event string
		for _, m := range feedMix {
			if pick < m.weight {
				event = m.name
				break
			}
			pick -= m.weight
		}
		tpl := templates[event]
		var d strings.Builder
		for {
			j := strings.Index(tpl, "{{")
			if j < 0 {
				d.WriteString(tpl)
				break
			}
			d.WriteString(tpl[:j])
			k := strings.Index(tpl[j:], "}}")
			switch tpl[j+2 : j+k] {
			case "ID":
				d.WriteString(snowflake())
			case "GUILD":
				// Skewed: a few hot guilds carry most events.
				d.WriteString(guilds[min(int(r.ExpFloat64()*10), len(guilds)-1)])
			case "NAME":
				d.WriteString(name())
			case "TEXT":
				d.WriteString(text())
			case "HEX":
				fmt.Fprintf(&d, "%016x", r.Uint64())
			}
			tpl = tpl[j+k+2:]
		}
		out[i] = fmt.Appendf(nil, `{"t":%q,"s":%d,"op":0,"d":%s}`, event, first+uint64(i), d.String())
	}
	return out
}

func TestRealisticFeedParses(t *testing.T) {
	t.Parallel()
	for i, msg := range realisticFeed(t, 200) {
		f, err := discordjson.ParseFrame(msg)
		if err != nil {
			t.Fatalf("feed message %d does not parse: %v\n%s", i, err, msg)
		}
		if f.Op != 0 || f.Seq != uint64(i+1) || f.Type == "" || len(f.D) == 0 {
			t.Fatalf("feed message %d parsed as op %d s %d t %q", i, f.Op, f.Seq, f.Type)
		}
	}
}

// benchDecode measures what the read loop does per message after the websocket layer:
// decompress, parse op/s/t, slice and copy d.
func benchDecode(b *testing.B, compression string) {
	const n = 8192
	msgs := realisticFeed(b, n)
	var frames [][]byte
	var raw, compressed int
	switch compression {
	case CompressionZlib:
		for _, parts := range zlibFrames(b, msgs, false) {
			frames = append(frames, parts[0])
		}
	case CompressionZstd:
		frames = zstdFrames(b, msgs)
	default:
		frames = msgs
	}
	for i := range msgs {
		raw += len(msgs[i])
		compressed += len(frames[i])
	}
	b.SetBytes(int64(raw / n))
	b.ReportAllocs()
	var dec streamDecoder
	var sink []byte
	// Wall time on a shared machine says little; process CPU time gives the per-core rate.
	var before syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &before); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		k := i % n
		if k == 0 {
			if z, ok := dec.(*zstdStream); ok {
				z.Close()
			}
			d, err := newStreamDecoder(compression, 0)
			if err != nil {
				b.Fatal(err)
			}
			dec = d
		}
		msg, err := dec.Feed(frames[k])
		if err != nil {
			b.Fatal(err)
		}
		f, err := discordjson.ParseFrame(msg)
		if err != nil {
			b.Fatal(err)
		}
		sink = bytes.Clone(f.D)
	}
	b.StopTimer()
	var after syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &after); err != nil {
		b.Fatal(err)
	}
	if z, ok := dec.(*zstdStream); ok {
		z.Close()
	}
	_ = sink
	cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/(float64(cpu)/1e9), "events/cpu-s")
	b.ReportMetric(float64(compressed)/float64(n), "wire-B/event")
}

func BenchmarkDecodeZlibStream(b *testing.B) { benchDecode(b, CompressionZlib) }
func BenchmarkDecodeZstdStream(b *testing.B) { benchDecode(b, CompressionZstd) }
func BenchmarkDecodePlain(b *testing.B)      { benchDecode(b, CompressionNone) }
