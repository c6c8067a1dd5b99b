// Package redact keeps secrets (bot tokens, the shared service secret) out of
// log lines and error messages.
//
// A Redactor replaces two kinds of text with [Placeholder]:
//
//   - values registered with Add, wherever they appear (also in their
//     JSON-escaped and Go-quoted forms, because log handlers escape strings);
//   - anything shaped like a secret even if nobody registered it: a Discord
//     bot token (base64 user id "." 6+ chars "." 27+ chars), the value after
//     "Bot " or "Bearer ", and the value of an Authorization header in the
//     forms it takes in logs ("Authorization: x", "authorization=x",
//     `"Authorization":"x"`, map[Authorization:[x]]), and the password of a
//     URL ("redis://:password@host", "rediss://user:password@host"), which
//     a Redis or database URL passed as a plain flag would otherwise show.
//
// The package-level functions use one process-wide Redactor, so a secret
// registered once (for example when a flag is parsed) is redacted in every
// logger built with [NewHandler] or [NewWriter]:
//
//	redact.Add(token)
//	logger := slog.New(redact.NewHandler(slog.NewJSONHandler(redact.NewWriter(os.Stderr), nil)))
//	err = errors.New(redact.String(err.Error()))
package redact

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Placeholder is what every redacted value is replaced with.
const Placeholder = "[redacted]"

// MinSecretLen is the shortest value Add accepts. Shorter values would shred
// unrelated text in every log line (a one-letter "secret" matches everywhere),
// and no real token or shared secret is that short.
const MinSecretLen = 8

var (
	// tokenShape is what replaceTokens finds, kept as a regexp to check it
	// in tests.
	tokenShape = regexp.MustCompile(`[A-Za-z0-9_\-]{20,}\.[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]{27,}`)
	// Authorization header values, in the shapes they take once printed by
	// fmt (http.Header is a map of slices), slog's text and JSON handlers, or
	// written raw. The value is an optional scheme word ("Bot", "Bearer",
	// "Basic") and the credential after it.
	authHeader = regexp.MustCompile(`(?i)(authorization\\?"?\s*[:=]\s*\[?\\?"?)((?:[A-Za-z]+[ \t]+)?[^\s"\\\],;}]+)`)
	// "Bot <token>" and "Bearer <secret>" wherever they appear.
	// The value may not start with "[", so an already redacted value is left
	// alone and redacting twice gives the same text.
	authSchemePrefix = regexp.MustCompile(`^(?i)(bot|bearer)\s+`)
	authScheme       = regexp.MustCompile(`\b(Bot|Bearer|bot|bearer|BOT|BEARER)\s+([^\s"'\\\[\],;}][^\s"'\\\],;}]*)`)
	// The password of scheme://user:password@host, split as net/url splits
	// it: the authority ends at "/", "?" or "#", the user name ends at the
	// first ":", and the password runs to the last "@" ("p@ss" is one
	// password). Spaces, double quotes and backslashes are not valid in
	// either, so they end the match where a log handler quoted the URL.
	urlPassword = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#"\\]*:)[^\s/?#"\\]+@`)
)

// Redactor replaces registered secrets and secret-shaped text. The zero value
// is ready to use and redacts only by shape until secrets are added. It is
// safe for concurrent use.
type Redactor struct {
	mu      sync.Mutex
	secrets map[string]struct{}
	// replacer is rebuilt on Add and read lock-free on every String call,
	// which happens for every log line.
	replacer atomic.Pointer[strings.Replacer]
}

// Add registers secret so that it is replaced wherever it appears. Values
// shorter than MinSecretLen are ignored (see MinSecretLen).
func (r *Redactor) Add(secret string) {
	if len(secret) < MinSecretLen {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.secrets == nil {
		r.secrets = make(map[string]struct{})
	}
	for _, form := range forms(secret) {
		r.secrets[form] = struct{}{}
	}
	// Longest first, so that a secret containing another one is replaced
	// whole rather than leaving its remainder behind.
	all := make([]string, 0, len(r.secrets))
	for s := range r.secrets {
		all = append(all, s)
	}
	sortByLenDesc(all)
	pairs := make([]string, 0, 2*len(all))
	for _, s := range all {
		pairs = append(pairs, s, Placeholder)
	}
	r.replacer.Store(strings.NewReplacer(pairs...))
}

// String returns s with every registered secret and secret-shaped value
// replaced by Placeholder.
func (r *Redactor) String(s string) string {
	if rep := r.replacer.Load(); rep != nil {
		s = rep.Replace(s)
	}
	s = replaceTokens(s)
	if strings.Contains(s, "://") {
		s = urlPassword.ReplaceAllString(s, "${1}"+Placeholder+"@")
	}
	// The regexps cost microseconds per line; most lines hold none of the
	// words they need, which a substring check rules out much faster.
	if !containsFold(s, "authorization") && !containsFold(s, "bot") && !containsFold(s, "bearer") {
		return s
	}
	s = authHeader.ReplaceAllStringFunc(s, func(m string) string {
		sub := authHeader.FindStringSubmatch(m)
		// Leave an already redacted value alone so that redacting twice
		// (handler, then writer) changes nothing. The optional "[" of
		// map[Authorization:[x]] may have eaten the placeholder's bracket.
		v := authSchemePrefix.ReplaceAllLiteralString(sub[2], "")
		if strings.HasPrefix(v, Placeholder[:len(Placeholder)-1]) ||
			(strings.HasSuffix(sub[1], "[") && strings.HasPrefix(v, Placeholder[1:len(Placeholder)-1])) {
			return m
		}
		return sub[1] + Placeholder
	})
	s = authScheme.ReplaceAllStringFunc(s, func(m string) string {
		sub := authScheme.FindStringSubmatch(m)
		if !credentialLike(sub[2]) {
			return m // prose: "the bot is not in it", "bot token (pass --token)"
		}
		return sub[1] + " " + Placeholder
	})
	return s
}

// credentialLike tells a credential after "Bot"/"Bearer" from an English
// word: credentials hold a digit or one of . _ - = / + ~, or are long. No
// token or shared secret (at least 16 characters) is a short plain word.
func credentialLike(v string) bool {
	if len(v) >= 16 {
		return true
	}
	return strings.ContainsAny(v, "0123456789._-=/+~")
}

// forms returns secret as it may appear after a log handler escaped it.
func forms(secret string) []string {
	out := []string{secret}
	if q := strconv.Quote(secret); q[1:len(q)-1] != secret {
		out = append(out, q[1:len(q)-1])
	}
	if j, err := json.Marshal(secret); err == nil && string(j[1:len(j)-1]) != secret {
		out = append(out, string(j[1:len(j)-1]))
	}
	return out
}

func sortByLenDesc(s []string) {
	// Insertion sort: the set holds a handful of secrets.
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && (len(s[j]) > len(s[j-1]) || (len(s[j]) == len(s[j-1]) && s[j] < s[j-1])); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

var global Redactor

// Add registers secret with the process-wide Redactor.
func Add(secret string) { global.Add(secret) }

// String redacts s with the process-wide Redactor.
func String(s string) string { return global.String(s) }

// Default returns the process-wide Redactor used by Add, String, NewHandler
// and NewWriter.
func Default() *Redactor { return &global }

// Minimum lengths of the three dot-separated parts of a Discord bot token:
// base64 of a 17-20 digit user id, a timestamp part, an HMAC part. JWTs have
// the same shape and are replaced too, which is intended.
const tokenPart1, tokenPart2, tokenPart3 = 20, 6, 27

func isTokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// replaceTokens replaces every run "A.B.C" of token characters whose parts
// are at least tokenPart1/2/3 long. It is the tokenShape regexp written as a
// single pass, several times faster, and returns s itself when nothing
// matches.
func replaceTokens(s string) string {
	var b strings.Builder
	last := 0 // s[last:] is not yet copied to b
	for i := 0; i < len(s); {
		if !isTokenByte(s[i]) {
			i++
			continue
		}
		// A run of token bytes starts at i; try to read three parts.
		start := i
		var lens [3]int
		end, parts := i, 0
		for parts < 3 {
			j := end
			for j < len(s) && isTokenByte(s[j]) {
				j++
			}
			lens[parts] = j - end
			parts++
			end = j
			if parts < 3 {
				if end >= len(s) || s[end] != '.' {
					break
				}
				end++ // the dot
			}
		}
		if parts == 3 && lens[0] >= tokenPart1 && lens[1] >= tokenPart2 && lens[2] >= tokenPart3 {
			b.WriteString(s[last:start])
			b.WriteString(Placeholder)
			last, i = end, end
			continue
		}
		// No token starts here; the next candidate starts after this run.
		i = start + lens[0]
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// containsFold reports whether s contains lower (which is lower case ASCII)
// in any case, without allocating.
func containsFold(s, lower string) bool {
	first := lower[0]
	for i := 0; i+len(lower) <= len(s); i++ {
		if c := s[i] | 0x20; c == first && strings.EqualFold(s[i:i+len(lower)], lower) {
			return true
		}
	}
	return false
}
