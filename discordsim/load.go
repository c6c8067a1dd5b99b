package discordsim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// EventMix weighs the kinds of generated events. Zero weights everywhere
// take the default mix, shaped like a chatty bot's traffic: mostly
// messages and typing, then reactions and presences.
type EventMix struct {
	Messages  float64 `json:"messages"`
	Edits     float64 `json:"edits"`
	Deletes   float64 `json:"deletes"`
	Reactions float64 `json:"reactions"`
	Typing    float64 `json:"typing"`
	Presences float64 `json:"presences"`
	Members   float64 `json:"members"`
	Voice     float64 `json:"voice"`
}

var defaultMix = EventMix{Messages: 45, Edits: 4, Deletes: 2, Reactions: 12, Typing: 20, Presences: 10, Members: 3, Voice: 4}

func (m EventMix) weights() []float64 {
	return []float64{m.Messages, m.Edits, m.Deletes, m.Reactions, m.Typing, m.Presences, m.Members, m.Voice}
}

// LoadConfig configures the traffic generator. Generated events are
// dispatched to the gateway only: they do not change the world or the REST
// message store (a generated message cannot be fetched over REST), which
// keeps the generator cheap enough for 50,000 events/s. Use REST or
// Server.UserMessage for traffic a bot must be able to act on.
type LoadConfig struct {
	// Rate is the number of events per second across all guilds.
	Rate float64 `json:"rate"`
	// Mix weighs the event kinds (default: see EventMix).
	Mix EventMix `json:"mix"`
	// Skew is the Zipf exponent over guilds by size rank, > 1 (default
	// 1.3): the hot guilds carry most of the traffic.
	Skew float64 `json:"skew"`
	// Seed makes the event sequence deterministic (default: Config.Seed).
	Seed uint64 `json:"seed"`
}

func (l LoadConfig) validate() error {
	if l.Rate < 0 || l.Rate > 10_000_000 {
		return fmt.Errorf("load rate must be between 0 and 10000000 events/s, got %g", l.Rate)
	}
	if l.Skew != 0 && l.Skew <= 1 {
		return fmt.Errorf("load skew must be > 1, got %g", l.Skew)
	}
	for _, w := range l.Mix.weights() {
		if w < 0 {
			return errors.New("load mix weights must not be negative")
		}
	}
	return nil
}

// LoadStats reports the generator's progress.
type LoadStats struct {
	Running bool             `json:"running"`
	Rate    float64          `json:"rate"`
	Emitted int64            `json:"emitted"`
	Skipped int64            `json:"skipped"` // events dropped because the generator fell behind its rate
	ByEvent map[string]int64 `json:"by_event"`
}

var loadEventNames = []string{"MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "MESSAGE_REACTION_ADD",
	"TYPING_START", "PRESENCE_UPDATE", "GUILD_MEMBER_UPDATE", "VOICE_STATE_UPDATE"}

// loadGen produces realistic traffic from pre-encoded per-guild fragments:
// each event is a few appends into a reused buffer, so the generator's cost
// stays far below the per-connection compression it feeds.
type loadGen struct {
	s       *Server
	cfg     LoadConfig
	stop    chan struct{}
	wg      sync.WaitGroup
	emitted atomic.Int64
	skipped atomic.Int64
	byEvent [8]atomic.Int64

	rng    *rand.Rand
	zipf   *rand.Zipf
	cum    []float64
	guilds []*guildTpl
	buf    []byte
	alt    []byte
}

// guildTpl holds a guild's pre-encoded fragments.
type guildTpl struct {
	id       Snowflake
	idJSON   string
	texts    []string // quoted channel ids
	voices   []string
	authors  []authorTpl
	recent   [16]recentMsg
	nrecent  int
	nextSlot int
}

type authorTpl struct {
	id     Snowflake
	idJSON string
	user   string // user object JSON
	member string // partial member JSON (no user)
	full   string // member JSON with user
}

type recentMsg struct {
	id, channel, author string
}

// StartLoad starts (or replaces) the traffic generator.
func (s *Server) StartLoad(cfg LoadConfig) error {
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	if cfg.Rate == 0 {
		return errors.New("load config: rate must be > 0")
	}
	s.StopLoad()
	l, err := newLoadGen(s, cfg)
	if err != nil {
		return err
	}
	s.loadMu.Lock()
	s.load = l
	s.loadMu.Unlock()
	l.wg.Go(l.run)
	return nil
}

// StopLoad stops the traffic generator, if running, and waits for it.
func (s *Server) StopLoad() {
	s.loadMu.Lock()
	l := s.load
	s.load = nil
	s.loadMu.Unlock()
	if l != nil {
		close(l.stop)
		l.wg.Wait()
	}
}

// LoadStats returns the generator's counters (zero when not running).
func (s *Server) LoadStats() LoadStats {
	s.loadMu.Lock()
	l := s.load
	s.loadMu.Unlock()
	st := LoadStats{ByEvent: map[string]int64{}}
	if l == nil {
		return st
	}
	st.Running, st.Rate, st.Emitted, st.Skipped = true, l.cfg.Rate, l.emitted.Load(), l.skipped.Load()
	for i, name := range loadEventNames {
		if n := l.byEvent[i].Load(); n > 0 {
			st.ByEvent[name] = n
		}
	}
	return st
}

func newLoadGen(s *Server, cfg LoadConfig) (*loadGen, error) {
	if cfg.Skew == 0 {
		cfg.Skew = 1.3
	}
	if cfg.Seed == 0 {
		cfg.Seed = s.cfg.Seed
	}
	mix := cfg.Mix.weights()
	var total float64
	for _, w := range mix {
		total += w
	}
	if total == 0 {
		cfg.Mix = defaultMix
		mix = defaultMix.weights()
		for _, w := range mix {
			total += w
		}
	}
	l := &loadGen{s: s, cfg: cfg, stop: make(chan struct{}), rng: rand.New(rand.NewPCG(cfg.Seed, 0x10ad))}
	acc := 0.0
	for _, w := range mix {
		acc += w / total
		l.cum = append(l.cum, acc)
	}
	w := s.world
	w.mu.RLock()
	defer w.mu.RUnlock()
	for _, gid := range w.guildOrder {
		gd := w.guilds[gid]
		if gd == nil {
			continue
		}
		l.guilds = append(l.guilds, l.templateLocked(gd))
	}
	if len(l.guilds) == 0 {
		return nil, errors.New("load: the world has no guilds")
	}
	l.zipf = rand.NewZipf(l.rng, cfg.Skew, 1, uint64(len(l.guilds)-1))
	return l, nil
}

func quoted(id Snowflake) string { return `"` + id.String() + `"` }

func (l *loadGen) templateLocked(gd *Guild) *guildTpl {
	w := l.s.world
	t := &guildTpl{id: gd.ID, idJSON: quoted(gd.ID)}
	for _, id := range gd.textChannels {
		t.texts = append(t.texts, quoted(id))
	}
	for _, id := range gd.voiceChannels {
		t.voices = append(t.voices, quoted(id))
	}
	// Hot guilds get more distinct authors; quiet ones need only a few.
	n := min(gd.genCount, 6)
	if gd.Hot {
		n = min(gd.genCount, 32)
	}
	for i := range n {
		k := (gd.genOffset + (i*7919)%max(gd.genCount, 1)) % w.userPool
		m, ok := w.memberLocked(gd, userIDFor(k))
		if !ok {
			continue
		}
		u := mustJSON(m.User)
		part := m
		part.User = nil
		pj := mustJSON(part)
		t.authors = append(t.authors, authorTpl{id: m.User.ID, idJSON: quoted(m.User.ID), user: string(u),
			member: string(pj), full: `{"user":` + string(u) + `,` + string(pj[1:])})
	}
	return t
}

var phrases = []string{
	"gg everyone", "anyone up for a game tonight?", "lol", "that patch broke everything again",
	"can someone help me with the setup? it keeps crashing on start", "good morning!", "brb",
	"did you see the announcement?", "this is the best server", "ok", "wait what", "I'll be on in 10",
	"has anyone tried the new update yet? the performance looks a lot better on my machine",
	"check the pinned messages", "thanks!", "no way", "that's hilarious", "who's hosting this week?",
}

var reactionEmojis = []string{`{"id":null,"name":"👍"}`, `{"id":null,"name":"😂"}`, `{"id":null,"name":"❤️"}`, `{"id":null,"name":"🔥"}`, `{"id":null,"name":"🎉"}`}

var statuses = []string{"online", "idle", "dnd", "offline"}

// run emits events at the configured rate until stopped, in 2 ms steps.
// When it falls behind (the machine is saturated) it skips the backlog
// rather than bursting, and counts what it skipped.
func (l *loadGen) run() {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var produced int64 // emitted plus skipped
	for {
		select {
		case <-l.stop:
			return
		case <-l.s.done:
			return
		case now := <-tick.C:
			n := int64(l.cfg.Rate*now.Sub(start).Seconds()) - produced
			if limit := int64(l.cfg.Rate/20) + 1; n > limit {
				l.skipped.Add(n - limit)
				produced += n - limit
				n = limit
			}
			for range n {
				l.emitOne()
			}
			produced += n
		}
	}
}

// pick chooses the next event's guild (by size rank) and kind.
func (l *loadGen) pick() (int, int) {
	gi := int(l.zipf.Uint64())
	r := l.rng.Float64()
	kind := 0
	for kind < len(l.cum)-1 && r >= l.cum[kind] {
		kind++
	}
	return gi, kind
}

// emitOne generates and dispatches one event.
func (l *loadGen) emitOne() {
	gi, kind := l.pick()
	g := l.guilds[gi]
	if len(g.authors) == 0 || len(g.texts) == 0 {
		kind = 5 // presence needs neither
	}
	if (kind == 1 || kind == 2 || kind == 3) && g.nrecent == 0 {
		kind = 0 // nothing to edit, delete or react to yet
	}
	l.byEvent[kind].Add(1)
	l.emitted.Add(1)
	gw := l.s.gw
	switch kind {
	case 0, 1:
		var msg recentMsg
		if kind == 0 {
			a := g.authors[l.rng.IntN(len(g.authors))]
			msg = recentMsg{id: quoted(l.s.newID()), channel: g.texts[l.rng.IntN(len(g.texts))], author: a.idJSON}
			g.recent[g.nextSlot] = msg
			g.nextSlot = (g.nextSlot + 1) % len(g.recent)
			g.nrecent = min(g.nrecent+1, len(g.recent))
		} else {
			msg = g.recent[l.rng.IntN(g.nrecent)]
		}
		a := g.authorByID(msg.author)
		content := phrases[l.rng.IntN(len(phrases))]
		l.buf = appendMessage(l.buf[:0], g, a, msg, content, kind == 1)
		mv := &msgVariant{full: l.buf}
		if gw.noContent.Load() > 0 {
			// Pre-built, so no session pays for parsing the event.
			l.alt = appendMessage(l.alt[:0], g, a, msg, "", kind == 1)
			mv.stripped, mv.author = l.alt, a.id
			mv.once.Do(func() {})
		}
		gw.dispatchRaw(g.id, loadEventNames[kind], l.buf, mv)
	case 2:
		i := l.rng.IntN(g.nrecent)
		msg := g.recent[i]
		g.recent[i] = g.recent[g.nrecent-1]
		g.nrecent--
		b := append(l.buf[:0], `{"id":`...)
		b = append(b, msg.id...)
		b = append(b, `,"channel_id":`...)
		b = append(b, msg.channel...)
		b = append(b, `,"guild_id":`...)
		b = append(b, g.idJSON...)
		l.buf = append(b, '}')
		gw.dispatchRaw(g.id, "MESSAGE_DELETE", l.buf, nil)
	case 3:
		msg := g.recent[l.rng.IntN(g.nrecent)]
		a := g.authors[l.rng.IntN(len(g.authors))]
		b := append(l.buf[:0], `{"user_id":`...)
		b = append(b, a.idJSON...)
		b = append(b, `,"type":0,"message_id":`...)
		b = append(b, msg.id...)
		b = append(b, `,"message_author_id":`...)
		b = append(b, msg.author...)
		b = append(b, `,"member":`...)
		b = append(b, a.full...)
		b = append(b, `,"emoji":`...)
		b = append(b, reactionEmojis[l.rng.IntN(len(reactionEmojis))]...)
		b = append(b, `,"channel_id":`...)
		b = append(b, msg.channel...)
		b = append(b, `,"burst":false,"guild_id":`...)
		b = append(b, g.idJSON...)
		l.buf = append(b, '}')
		gw.dispatchRaw(g.id, "MESSAGE_REACTION_ADD", l.buf, nil)
	case 4:
		a := g.authors[l.rng.IntN(len(g.authors))]
		b := append(l.buf[:0], `{"user_id":`...)
		b = append(b, a.idJSON...)
		b = append(b, `,"timestamp":`...)
		b = strconv.AppendInt(b, time.Now().Unix(), 10)
		b = append(b, `,"member":`...)
		b = append(b, a.full...)
		b = append(b, `,"channel_id":`...)
		b = append(b, g.texts[l.rng.IntN(len(g.texts))]...)
		b = append(b, `,"guild_id":`...)
		b = append(b, g.idJSON...)
		l.buf = append(b, '}')
		gw.dispatchRaw(g.id, "TYPING_START", l.buf, nil)
	case 5:
		var uid string
		if len(g.authors) > 0 {
			uid = g.authors[l.rng.IntN(len(g.authors))].idJSON
		} else {
			uid = quoted(userIDFor(0))
		}
		st := statuses[l.rng.IntN(len(statuses))]
		b := append(l.buf[:0], `{"user":{"id":`...)
		b = append(b, uid...)
		b = append(b, `},"status":"`...)
		b = append(b, st...)
		b = append(b, `","activities":[],"client_status":{"desktop":"`...)
		b = append(b, st...)
		b = append(b, `"},"guild_id":`...)
		b = append(b, g.idJSON...)
		l.buf = append(b, '}')
		gw.dispatchRaw(g.id, "PRESENCE_UPDATE", l.buf, nil)
	case 6:
		a := g.authors[l.rng.IntN(len(g.authors))]
		b := append(l.buf[:0], `{"guild_id":`...)
		b = append(b, g.idJSON...)
		b = append(b, ',')
		b = append(b, a.full[1:]...)
		l.buf = b
		gw.dispatchRaw(g.id, "GUILD_MEMBER_UPDATE", l.buf, nil)
	case 7:
		a := g.authors[l.rng.IntN(len(g.authors))]
		b := append(l.buf[:0], `{"guild_id":`...)
		b = append(b, g.idJSON...)
		b = append(b, `,"channel_id":`...)
		if len(g.voices) > 0 && l.rng.IntN(3) > 0 {
			b = append(b, g.voices[l.rng.IntN(len(g.voices))]...)
		} else {
			b = append(b, "null"...)
		}
		b = append(b, `,"user_id":`...)
		b = append(b, a.idJSON...)
		b = append(b, `,"member":`...)
		b = append(b, a.full...)
		b = append(b, `,"session_id":"`...)
		b = strconv.AppendUint(b, l.rng.Uint64(), 16)
		b = append(b, `","deaf":false,"mute":false,"self_deaf":false,"self_mute":`...)
		b = strconv.AppendBool(b, l.rng.IntN(2) == 0)
		b = append(b, `,"self_video":false,"suppress":false,"request_to_speak_timestamp":null}`...)
		l.buf = b
		gw.dispatchRaw(g.id, "VOICE_STATE_UPDATE", l.buf, nil)
	}
}

func (g *guildTpl) authorByID(idJSON string) authorTpl {
	for _, a := range g.authors {
		if a.idJSON == idJSON {
			return a
		}
	}
	return g.authors[0]
}

// appendMessage appends a MESSAGE_CREATE/UPDATE body.
func appendMessage(b []byte, g *guildTpl, a authorTpl, msg recentMsg, content string, edited bool) []byte {
	now := time.Now().UTC()
	b = append(b, `{"type":0,"tts":false,"timestamp":"`...)
	b = now.AppendFormat(b, "2006-01-02T15:04:05.000000+00:00")
	b = append(b, `","pinned":false,"mentions":[],"mention_roles":[],"mention_everyone":false,"member":`...)
	b = append(b, a.member...)
	b = append(b, `,"id":`...)
	b = append(b, msg.id...)
	b = append(b, `,"flags":0,"embeds":[],"edited_timestamp":`...)
	if edited {
		b = append(b, '"')
		b = now.AppendFormat(b, "2006-01-02T15:04:05.000000+00:00")
		b = append(b, '"')
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"content":`...)
	b = strconv.AppendQuote(b, content)
	b = append(b, `,"components":[],"channel_type":0,"channel_id":`...)
	b = append(b, msg.channel...)
	b = append(b, `,"author":`...)
	b = append(b, a.user...)
	b = append(b, `,"attachments":[],"guild_id":`...)
	b = append(b, g.idJSON...)
	return append(b, '}')
}
